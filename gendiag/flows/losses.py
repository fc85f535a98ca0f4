"""Training objectives for flows, built from `ops/fdiv.py` and `ops/kernels.py`.

One interface, `Objective`, so the trainer does not care which:

  flow_loss(flow, params, critic_params, batch, key) -> (loss, metrics)
  critic_loss(flow, critic_params, params, batch, key) -> (loss, metrics)
  init_critic(flow, key) -> critic params ({} when `uses_critic` is False)
  prepare(x) -> the objective with data-dependent defaults filled in

`batch` is `Batch(x, labels)` (labels None for unconditional flows). With
P the data, Q_theta the flow and r = p / q_theta:

  MaximumLikelihood     -E_P[log q_theta(x)]                 (= KL + const)

  AdversarialFDivergence  the PR-divergence paper's method for any f: a
      critic fitted on an auxiliary divergence g gives r_hat (see
      `discriminator.py`); the flow minimises f of the ratio on its own
      reparameterised samples x = T_theta(z),

        L(theta) = E_z[ f(r_theta(x)) ],
        log r_theta(x) = log r_hat(x) + log q_sg(theta)(x) - log q_theta(x),

      i.e. p_hat = r_hat q_sg(theta) is held fixed as a function of x
      (sg = stop_gradient). At theta = sg(theta) the value is the primal
      estimate E_Q[f(r_hat)] of D_f; since the flow knows q_theta exactly,
      the gradient is that of D_f(P_hat || Q_theta), pathwise and density
      terms both, and vanishes at q = p_hat. (Freezing r_hat itself, as a GAN
      generator must, drops the density term; its gradient moves samples
      towards small f(r), which for KL is r = 1/e, not towards the data.)

  WeightedMaximumLikelihood  the exact-likelihood form of the same gradient,

        grad D_f(P || Q_theta) = -E_P[ w(r) grad log q_theta(x) ],
        w(r) = f'(r) - f(r) / r       (`FDivergence.likelihood_weight`),

      estimated on data with r = r_hat from the critic:
      L = -mean(sg(w) log q_theta(x)) / mean(|sg(w)|). The normalisation
      rescales each batch's gradient by a positive constant (not needed by
      Adam, but it keeps the loss on the NLL's scale). For f = KL, w = 1:
      exactly the MLE gradient, and no critic is trained.

  ScoreFunctionFDivergence  the same gradient on the flow's own samples,
      held fixed (x ~ Q_theta, no pathwise term),

        grad D_f(P || Q_theta) = E_Q[ (h(r) - b) grad_theta log q_theta(x) ],
        h(r) = f(r) - r f'(r)          (`FDivergence.score_weight`),

      with r = r_hat from the critic and b the leave-one-out batch mean of
      h (E_Q[grad log q_theta] = 0, so b adds no bias). It needs only the
      critic's values on model samples: neither the critic's spatial
      gradient (adversarial form) nor importance weights q / p on data that
      cannot see where the flow puts mass the data lacks (weighted MLE).
      For PR-lam, h = 1[lam r <= 1] - max(lam, 1): bounded.

  MMD   MMD^2(P, Q_theta) between a data batch and as many reparameterised
      samples (Gretton et al. 2012; as a flow/GAN loss: Li et al. 2015,
      Dziugaite et al. 2015), with an `ops.kernels` kernel; the Gaussian
      bandwidth defaults to the median heuristic on the training data.

References:
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023.
  Nowozin, Cseke, Tomioka. f-GAN. NeurIPS 2016.
  Li, Swersky, Zemel. Generative Moment Matching Networks. ICML 2015.
"""

import dataclasses
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gendiag.flows import discriminator
from gendiag.ops import fdiv
from gendiag.ops import kernels

OBJECTIVES = ("mle", "fdiv", "fdiv_adversarial", "fdiv_weighted_mle",
              "fdiv_score_function", "mmd")
FORMS = ("adversarial", "weighted_mle", "score_function")
MMD_ESTIMATORS = ("unbiased", "biased")


class Batch(NamedTuple):
  """A minibatch of data: x (b, d) and labels (b,) int or None."""
  x: jax.Array
  labels: Optional[jax.Array] = None


class Objective:
  """Base class; see the module docstring."""
  name = ""
  uses_critic = False

  def prepare(self, x) -> "Objective":
    del x
    return self

  def init_critic(self, flow, key):
    del flow, key
    return {}

  def flow_loss(self, flow, params, critic_params, batch: Batch, key):
    raise NotImplementedError

  def critic_loss(self, flow, critic_params, params, batch: Batch, key):
    raise NotImplementedError(f"{self.name} trains no critic.")

  def to_dict(self) -> dict:
    """JSON-ready description (for logs and resume checks)."""
    out = {"objective": self.name}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, fdiv.FDivergence):
        value = {"name": value.name, **{f.name: float(getattr(value, f.name))
                                        for f in dataclasses.fields(value)}}
      elif isinstance(value, discriminator.Discriminator):
        value = {"auxiliary": value.auxiliary.name,
                 "hidden_sizes": list(value.hidden_sizes),
                 "ratio_range": list(value.ratio_range),
                 "fourier_features": value.fourier_features,
                 "fourier_scale": value.fourier_scale}
      elif isinstance(value, tuple):
        value = list(value)
      out[field.name] = value
    return out


def _mean_log_prob(flow, params, batch):
  return flow.log_prob(params, batch.x, batch.labels)


@dataclasses.dataclass(frozen=True)
class MaximumLikelihood(Objective):
  """Negative log-likelihood -mean_i log q_theta(x_i) (nats per sample)."""
  name = "mle"

  def flow_loss(self, flow, params, critic_params, batch, key):
    del critic_params, key
    nll = -jnp.mean(_mean_log_prob(flow, params, batch))
    return nll, {"nll": nll}


class _WithCritic(Objective):
  """Critic training shared by the f-divergence objectives."""

  @property
  def uses_critic(self):
    return True

  def init_critic(self, flow, key):
    if not self.uses_critic:
      return {}
    return self.critic.init(key, flow.dim, flow.num_classes)

  def critic_loss(self, flow, critic_params, params, batch, key):
    generated = jax.lax.stop_gradient(
        flow.sample(params, key, batch.x.shape[0], batch.labels))
    loss = self.critic.dual_loss(critic_params, flow, batch.x, generated,
                                 batch.labels, batch.labels)
    return loss, {"critic_bound": -loss}


@dataclasses.dataclass(frozen=True)
class AdversarialFDivergence(_WithCritic):
  """D_f on the flow's own samples with a critic's ratio (module docstring).

  Attributes:
    divergence: the f-divergence minimised (e.g. fdiv.get('pr', lam=2.0)).
    critic: the Discriminator giving r_hat (auxiliary divergence inside).
  """
  divergence: fdiv.FDivergence
  critic: discriminator.Discriminator
  name = "fdiv_adversarial"

  def flow_loss(self, flow, params, critic_params, batch, key):
    critic_params = jax.lax.stop_gradient(critic_params)
    n = batch.x.shape[0]
    x, log_q = flow.sample_and_log_prob(params, key, n, batch.labels)
    log_q_frozen = flow.log_prob(jax.lax.stop_gradient(params), x,
                                 batch.labels)
    r_hat = self.critic.ratio(critic_params, flow, x, batch.labels)
    log_r = jnp.log(r_hat) + log_q_frozen - log_q
    values = self.divergence.f(jnp.exp(log_r))
    loss = jnp.mean(values)
    return loss, {"divergence_estimate": loss,
                  "mean_ratio_generated": jnp.mean(r_hat)}


@dataclasses.dataclass(frozen=True)
class WeightedMaximumLikelihood(_WithCritic):
  """-E_P[w(r) log q_theta] with w = f'(r) - f(r)/r (module docstring).

  Attributes:
    divergence: the f-divergence whose exact gradient is followed.
    critic: the Discriminator giving r_hat on data points.
    normalize_weights: divide by the batch mean of |w| (stop-gradient).
  """
  divergence: fdiv.FDivergence
  critic: discriminator.Discriminator
  normalize_weights: bool = True
  name = "fdiv_weighted_mle"

  @property
  def uses_critic(self):
    # w = 1 for KL: the ratio is not needed.
    return not isinstance(self.divergence, fdiv.KL)

  def weights(self, flow, critic_params, batch):
    """(b,) sg(w(r_hat(x))) on the data batch (ones for KL)."""
    if not self.uses_critic:
      return jnp.ones(batch.x.shape[0], batch.x.dtype)
    r = self.critic.ratio(jax.lax.stop_gradient(critic_params), flow,
                          batch.x, batch.labels)
    return jax.lax.stop_gradient(self.divergence.likelihood_weight(r))

  def flow_loss(self, flow, params, critic_params, batch, key):
    del key
    w = self.weights(flow, critic_params, batch)
    log_q = _mean_log_prob(flow, params, batch)
    norm = jnp.mean(jnp.abs(w)) if self.normalize_weights else 1.0
    norm = jnp.where(norm > 0, norm, 1.0)
    loss = -jnp.mean(w * log_q) / norm
    out = {"nll": -jnp.mean(jax.lax.stop_gradient(log_q)),
           "mean_weight": jnp.mean(w)}
    return loss, out


@dataclasses.dataclass(frozen=True)
class ScoreFunctionFDivergence(_WithCritic):
  """E_Q[(h(r) - b) log q_theta(x)] on the flow's own, frozen samples.

  The exact gradient on model samples (score-function / likelihood-ratio
  form): with x ~ Q_theta held fixed and h(r) = f(r) - r f'(r)
  (`FDivergence.score_weight`),

    grad D_f(P || Q_theta) = E_Q[ h(r(x)) grad_theta log q_theta(x) ],

  and E_Q[grad log q_theta] = 0 lets a baseline b (leave-one-out batch mean
  of h) cut the variance without bias. Unlike the adversarial form it uses
  only the critic's values on model samples, not its spatial gradient, and
  unlike the weighted-MLE form it needs no importance weight q / p to see
  where the flow puts mass the data lacks. For the PR-divergence h is
  1[lam r <= 1] + const: bounded, it lowers the density of the samples the
  critic marks as outside the lam-trade-off region {lam p > q}.

  Attributes:
    divergence: the f-divergence whose gradient is followed.
    critic: the Discriminator giving r_hat on model samples.
  """
  divergence: fdiv.FDivergence
  critic: discriminator.Discriminator
  name = "fdiv_score_function"

  def flow_loss(self, flow, params, critic_params, batch, key):
    n = batch.x.shape[0]
    x = jax.lax.stop_gradient(flow.sample(params, key, n, batch.labels))
    r = self.critic.ratio(jax.lax.stop_gradient(critic_params), flow, x,
                          batch.labels)
    h = jax.lax.stop_gradient(self.divergence.score_weight(r))
    baseline = (jnp.sum(h) - h) / max(n - 1, 1)
    log_q = flow.log_prob(params, x, batch.labels)
    loss = jnp.mean((h - baseline) * log_q)
    return loss, {"divergence_estimate": jnp.mean(self.divergence.f(r)),
                  "mean_ratio_generated": jnp.mean(r)}


@dataclasses.dataclass(frozen=True)
class MMD(Objective):
  """MMD^2 between a data batch and reparameterised flow samples.

  MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), the diagonals
  dropped for 'unbiased' (`gendiag.metrics.mmd`'s estimators), summed over
  the kernels of bandwidth s * m for m in `bandwidth_multipliers`.

  Attributes:
    kernel: an `ops.kernels` name ('gaussian', 'imq', 'laplace',
      'polynomial').
    bandwidth: radial kernels' bandwidth s; None = the median heuristic on
      the data (filled in by `prepare`).
    bandwidth_multipliers: a mixture of bandwidths (the MMD-GAN practice).
    estimator: 'unbiased' or 'biased'.
  """
  kernel: str = "gaussian"
  bandwidth: Optional[float] = None
  bandwidth_multipliers: Tuple[float, ...] = (1.0,)
  estimator: str = "unbiased"
  name = "mmd"

  def __post_init__(self):
    if self.kernel not in kernels.KERNELS:
      raise ValueError(f"unknown kernel {self.kernel!r}; choose from "
                       f"{sorted(kernels.KERNELS)}.")
    if self.estimator not in MMD_ESTIMATORS:
      raise ValueError(f"unknown MMD estimator {self.estimator!r}; choose "
                       f"from {MMD_ESTIMATORS}.")
    object.__setattr__(self, "bandwidth_multipliers",
                       tuple(float(m) for m in self.bandwidth_multipliers))
    if self.bandwidth is not None and not self.bandwidth > 0:
      raise ValueError(f"`bandwidth` must be > 0; got {self.bandwidth}.")
    if not self.bandwidth_multipliers or min(self.bandwidth_multipliers) <= 0:
      raise ValueError("`bandwidth_multipliers` must be positive.")

  @property
  def radial(self) -> bool:
    return self.kernel != "polynomial"

  def prepare(self, x):
    if self.radial and self.bandwidth is None:
      return dataclasses.replace(
          self, bandwidth=float(kernels.median_heuristic(jnp.asarray(x))))
    return self

  def kernel_list(self):
    if not self.radial:
      return [kernels.get_kernel(self.kernel)]
    if self.bandwidth is None:
      raise ValueError("MMD bandwidth is unset; call `prepare(data)` first "
                       "or pass `bandwidth`.")
    return [kernels.get_kernel(self.kernel, bandwidth=self.bandwidth * m)
            for m in self.bandwidth_multipliers]

  def mmd2(self, x, y):
    """MMD^2 estimate between x (n, d) and y (m, d), differentiable."""
    n, m = x.shape[0], y.shape[0]
    total = 0.0
    for k in self.kernel_list():
      kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
      if self.estimator == "unbiased":
        total += ((jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
                  + (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
                  - 2.0 * jnp.mean(kxy))
      else:
        total += jnp.mean(kxx) + jnp.mean(kyy) - 2.0 * jnp.mean(kxy)
    return total

  def flow_loss(self, flow, params, critic_params, batch, key):
    del critic_params
    y = flow.sample(params, key, batch.x.shape[0], batch.labels)
    loss = self.mmd2(batch.x, y)
    return loss, {"mmd2": loss}


def make_objective(name: str, *, divergence: str = "kl",
                   lam: Optional[float] = None, form: Optional[str] = None,
                   auxiliary: str = "pearson",
                   critic_hidden_sizes=(64, 64),
                   ratio_range=(1e-3, 1e3), critic_fourier_features: int = 0,
                   critic_fourier_scale: float = 10.0, normalize_weights: bool = True,
                   kernel: str = "gaussian", bandwidth: Optional[float] = None,
                   bandwidth_multipliers=(1.0,),
                   estimator: str = "unbiased") -> Objective:
  """Builds an objective by name; bad settings raise ValueError here.

  Args:
    name: 'mle', 'fdiv' (with `form`), 'fdiv_adversarial' (= 'fdiv' with
      form='adversarial'), 'fdiv_weighted_mle' (form='weighted_mle'),
      'fdiv_score_function' (form='score_function') or 'mmd'.
    divergence: for 'fdiv', a key of `ops.fdiv.DIVERGENCES` (e.g. 'pr').
    lam: the PR trade-off lam > 0 (only with divergence='pr', required).
    form: 'adversarial' (the paper's: f of the critic's ratio on flow
      samples; the default), 'weighted_mle' (the exact-likelihood gradient
      on data) or 'score_function' (the exact gradient on the flow's own,
      fixed samples).
    auxiliary: the critic's divergence (needs a ratio; 'pearson' as in the
      paper).
    critic_hidden_sizes: critic MLP widths.
    ratio_range: clip of the ratio estimate.
    critic_fourier_features, critic_fourier_scale: the critic's sin input
      layer (`discriminator.Discriminator`); 0 features for none.
    normalize_weights: weighted_mle's batch normalisation of the weights.
    kernel, bandwidth, bandwidth_multipliers, estimator: for 'mmd'.

  Returns:
    An Objective.
  """
  if name == "mle":
    return MaximumLikelihood()
  if name == "mmd":
    return MMD(kernel=kernel, bandwidth=bandwidth,
               bandwidth_multipliers=tuple(bandwidth_multipliers),
               estimator=estimator)
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective {name!r}; choose from {OBJECTIVES}.")
  if name != "fdiv":
    named_form = name[len("fdiv_"):]
    if form is not None and form != named_form:
      raise ValueError(f"objective {name!r} conflicts with form={form!r}; "
                       "use name='fdiv' with a form, or drop `form`.")
    form = named_form
  form = "adversarial" if form is None else form
  if form not in FORMS:
    raise ValueError(f"unknown f-divergence form {form!r}; choose from "
                     f"{FORMS}.")
  if divergence == "pr":
    if lam is None:
      raise ValueError("divergence 'pr' needs the trade-off `lam` > 0 "
                       "(large lam favours precision, small lam recall).")
    div = fdiv.get("pr", lam=float(lam))
  else:
    if lam is not None:
      raise ValueError(f"`lam` is the PR-divergence's trade-off; "
                       f"{divergence!r} takes none.")
    div = fdiv.get(divergence)
  critic = discriminator.Discriminator(
      fdiv.get(auxiliary), hidden_sizes=tuple(critic_hidden_sizes),
      ratio_range=tuple(ratio_range),
      fourier_features=critic_fourier_features,
      fourier_scale=critic_fourier_scale)
  if form == "adversarial":
    if not np.isfinite(div.f(jnp.asarray(ratio_range[0]))):
      raise ValueError(f"{div.name}: f is infinite at the ratio clip "
                       f"{ratio_range[0]}; raise ratio_range[0].")
    return AdversarialFDivergence(div, critic)
  if form == "score_function":
    return ScoreFunctionFDivergence(div, critic)
  return WeightedMaximumLikelihood(div, critic, normalize_weights)
