"""f-divergences: the table, discrete values and the variational bound.

Orientation (every formula here): P is the real distribution, Q the model,
r = dP/dQ the density ratio real over model, and

  D_f(P || Q) = E_Q[f(r)] + f'(inf) P(q = 0),   f convex, f(1) = 0,

so f(u) = u log u is the forward KL(P || Q), i.e. maximum likelihood.

The table `DIVERGENCES` maps a name to a small frozen dataclass (a pytree, so
it passes through `jit`/`vmap` and its parameters can be traced) with, in
closed form:

  f(u), f_prime(u), f_double_prime(u)   the generator and its derivatives
  conjugate(t)     f*(t) = sup_{u >= 0} t u - f(u); +inf outside its domain
  pr_weight(lam)   w(lam) = f''(1/lam) / lam^3, the density of the mixture
  pr_atoms         point masses of that mixture ((lam, mass), ...)

Values of discrete distributions (`f_divergence`), PR curves, PR-divergences
and the mixture theorem linking them (weight `pr_weight`) are in
`gendiag.ops.pr_curves`.

For training (flows, GANs): `variational_bound` is the dual lower bound
E_P[T] - E_Q[f*(T)] <= D_f with `output_activation` mapping a real critic
output into dom f*; `ratio_from_critic` is the ratio estimate (f*)'(T); and
`likelihood_weight(r) = f'(r) - f(r)/r` turns the exact gradient into a
weighted maximum likelihood,

  grad_theta D_f(P || Q_theta) = -E_P[ w(r) grad_theta log q_theta ],

which is exactly the NLL gradient (w = 1) for f = KL; on the model's own
samples the same gradient is E_Q[h(r) grad log q_theta] with
`score_weight(r) = f(r) - r f'(r)` (= -r w(r)).
"""

import dataclasses
import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np


def _register(cls, data=()):
  cls = dataclasses.dataclass(frozen=True)(cls)
  return jax.tree_util.register_dataclass(cls, data_fields=list(data),
                                          meta_fields=[])


def _safe_pos(u):
  """u where u > 0 and 1 elsewhere (so logs and powers stay finite)."""
  return jnp.where(u > 0, u, 1.0)


class FDivergence:
  """Base class: one f-divergence in closed form (see the module docstring).

  Subclasses set `name` and override the methods. `f_at_zero` is f(0) and
  `slope_at_infinity` f'(inf) = lim f(u)/u; both may be inf. `conjugate_sup`
  is the upper end of dom f* (inclusive when `conjugate_sup_closed`).
  """
  name = ""
  f_at_zero = 0.0
  slope_at_infinity = math.inf
  conjugate_sup = math.inf
  conjugate_sup_closed = False
  pr_atoms: Tuple[Tuple[float, float], ...] = ()

  def f(self, u):
    raise NotImplementedError

  def f_prime(self, u):
    raise NotImplementedError

  def f_double_prime(self, u):
    """f''(u); 0 where f'' is a point mass (those are `pr_atoms`)."""
    raise NotImplementedError

  def conjugate(self, t):
    raise NotImplementedError

  def pr_weight(self, lam):
    """w(lam) = f''(1/lam) / lam^3, the PR-mixture density."""
    return self.f_double_prime(1.0 / lam) / lam ** 3

  def output_activation(self, v):
    """Maps a real critic output v into dom f* (Nowozin et al. 2016)."""
    raise NotImplementedError

  def ratio_from_critic(self, t):
    """(f*)'(t): the density-ratio estimate p/q from a critic value t."""
    raise NotImplementedError(
        f"{self.name}: f* is piecewise linear, so (f*)' does not estimate the "
        "ratio; train the critic on a smooth auxiliary divergence (e.g. "
        "'pearson', as Verine et al. 2023 do) and use its ratio_from_critic.")

  def likelihood_weight(self, r):
    """w(r) = f'(r) - f(r)/r, the weight of the exact weighted-MLE gradient."""
    rs = _safe_pos(r)
    return self.f_prime(rs) - self.f(rs) / rs

  def score_weight(self, r):
    """h(r) = f(r) - r f'(r), the weight of the exact score-function gradient.

    grad_theta D_f(P || Q_theta) = E_{Q_theta}[ h(r) grad_theta log q_theta ]
    (x held fixed), with r = p / q_theta; h = -r w(r).
    """
    return -r * self.likelihood_weight(r)

  def in_conjugate_domain(self, t):
    if self.conjugate_sup_closed:
      return t <= self.conjugate_sup
    return t < self.conjugate_sup


class KL(FDivergence):
  """Forward KL(P || Q), f(u) = u log u: maximum likelihood, favours recall."""
  name = "kl"
  f_at_zero = 0.0
  slope_at_infinity = math.inf

  def f(self, u):
    return jax.scipy.special.xlogy(u, u)

  def f_prime(self, u):
    return jnp.log(u) + 1.0

  def f_double_prime(self, u):
    return 1.0 / u

  def conjugate(self, t):
    return jnp.exp(t - 1.0)

  def output_activation(self, v):
    return v

  def ratio_from_critic(self, t):
    return jnp.exp(t - 1.0)

  def likelihood_weight(self, r):
    return jnp.ones_like(r)  # f'(r) - f(r)/r = log r + 1 - log r, exactly.


class ReverseKL(FDivergence):
  """Reverse KL(Q || P), f(u) = -log u: mode seeking, favours precision."""
  name = "reverse_kl"
  f_at_zero = math.inf
  slope_at_infinity = 0.0
  conjugate_sup = 0.0

  def f(self, u):
    return jnp.where(u > 0, -jnp.log(_safe_pos(u)), jnp.inf)

  def f_prime(self, u):
    return -1.0 / u

  def f_double_prime(self, u):
    return 1.0 / u ** 2

  def conjugate(self, t):
    ok = t < 0
    return jnp.where(ok, -1.0 - jnp.log(jnp.where(ok, -t, 1.0)), jnp.inf)

  def output_activation(self, v):
    return -jnp.exp(-v)

  def ratio_from_critic(self, t):
    return -1.0 / t


class Pearson(FDivergence):
  """Pearson chi^2(P || Q), f(u) = (u - 1)^2."""
  name = "pearson"
  f_at_zero = 1.0
  slope_at_infinity = math.inf

  def f(self, u):
    return (u - 1.0) ** 2

  def f_prime(self, u):
    return 2.0 * (u - 1.0)

  def f_double_prime(self, u):
    return 2.0 * jnp.ones_like(u)

  def conjugate(self, t):
    # sup over u >= 0: the stationary point u = t/2 + 1 if t >= -2, else u = 0.
    return jnp.where(t >= -2.0, t + t ** 2 / 4.0, -1.0)

  def output_activation(self, v):
    return v

  def ratio_from_critic(self, t):
    return jnp.maximum(t / 2.0 + 1.0, 0.0)


class Hellinger(FDivergence):
  """Squared Hellinger distance, f(u) = (sqrt(u) - 1)^2 (no factor 1/2)."""
  name = "hellinger"
  f_at_zero = 1.0
  slope_at_infinity = 1.0
  conjugate_sup = 1.0

  def f(self, u):
    return (jnp.sqrt(u) - 1.0) ** 2

  def f_prime(self, u):
    return 1.0 - 1.0 / jnp.sqrt(u)

  def f_double_prime(self, u):
    return 0.5 * u ** -1.5

  def conjugate(self, t):
    ok = t < 1.0
    return jnp.where(ok, t / jnp.where(ok, 1.0 - t, 1.0), jnp.inf)

  def output_activation(self, v):
    return 1.0 - jnp.exp(-v)

  def ratio_from_critic(self, t):
    return 1.0 / (1.0 - t) ** 2


class JensenShannon(FDivergence):
  """Jensen-Shannon divergence (1/2-scaled, in [0, log 2]).

  f(u) = (u log u - (1 + u) log((1 + u) / 2)) / 2, so that
  D_f = KL(P || M)/2 + KL(Q || M)/2 with M = (P + Q)/2.
  """
  name = "jensen_shannon"
  f_at_zero = 0.5 * math.log(2.0)
  slope_at_infinity = 0.5 * math.log(2.0)
  conjugate_sup = 0.5 * math.log(2.0)

  def f(self, u):
    xlogy = jax.scipy.special.xlogy
    return 0.5 * (xlogy(u, u) - xlogy(1.0 + u, (1.0 + u) / 2.0))

  def f_prime(self, u):
    return 0.5 * (jnp.log(2.0 * u) - jnp.log1p(u))

  def f_double_prime(self, u):
    return 1.0 / (2.0 * u * (1.0 + u))

  def conjugate(self, t):
    ok = t < self.conjugate_sup
    inner = jnp.where(ok, 2.0 - jnp.exp(2.0 * t), 1.0)
    return jnp.where(ok, -0.5 * jnp.log(inner), jnp.inf)

  def output_activation(self, v):
    return 0.5 * (math.log(2.0) - jax.nn.softplus(-v))

  def ratio_from_critic(self, t):
    e = jnp.exp(2.0 * t)
    return e / (2.0 - e)


class TotalVariation(FDivergence):
  """Total variation, f(u) = |u - 1| / 2; the PR-divergence at lam = 1."""
  name = "total_variation"
  f_at_zero = 0.5
  slope_at_infinity = 0.5
  conjugate_sup = 0.5
  conjugate_sup_closed = True
  pr_atoms = ((1.0, 1.0),)

  def f(self, u):
    return 0.5 * jnp.abs(u - 1.0)

  def f_prime(self, u):
    return 0.5 * jnp.sign(u - 1.0)

  def f_double_prime(self, u):
    return jnp.zeros_like(u)

  def conjugate(self, t):
    return jnp.where(t <= 0.5, jnp.maximum(t, -0.5), jnp.inf)

  def output_activation(self, v):
    return 0.5 * jnp.tanh(v)


class PR(FDivergence):
  """The PR-divergence of trade-off lam (Verine et al. 2023).

  f_lam(u) = max(lam u, 1) - max(lam, 1), and D_lam = min(lam, 1) - alpha_lam:
  minimising it maximises the precision alpha_lam at trade-off lam (large lam
  weights precision, small lam recall). lam = 1 is total variation.
  Conjugate f*(t) = max(t, 0)/lam + max(lam, 1) - 1 on t <= lam.
  `lam` is a pytree leaf: vmap over it for a sweep.
  """
  lam: float = 1.0
  name = "pr"
  conjugate_sup_closed = True

  @property
  def f_at_zero(self):
    return 1.0 - jnp.maximum(self.lam, 1.0)

  @property
  def slope_at_infinity(self):
    return self.lam

  @property
  def conjugate_sup(self):
    return self.lam

  @property
  def pr_atoms(self):
    return ((self.lam, 1.0),)

  def f(self, u):
    return jnp.maximum(self.lam * u, 1.0) - jnp.maximum(self.lam, 1.0)

  def f_prime(self, u):
    return jnp.where(self.lam * u > 1.0, self.lam, 0.0)

  def f_double_prime(self, u):
    return jnp.zeros_like(u)

  def conjugate(self, t):
    value = jnp.maximum(t, 0.0) / self.lam + jnp.maximum(self.lam, 1.0) - 1.0
    return jnp.where(t <= self.lam, value, jnp.inf)

  def output_activation(self, v):
    # The optimal critic is lam * 1[lam p/q > 1], in {0, lam}.
    return self.lam * jax.nn.sigmoid(v)

  def likelihood_weight(self, r):
    rs = _safe_pos(r)
    return (jnp.maximum(self.lam, 1.0) - (self.lam * rs <= 1.0)) / rs


KL = _register(KL)
ReverseKL = _register(ReverseKL)
Pearson = _register(Pearson)
Hellinger = _register(Hellinger)
JensenShannon = _register(JensenShannon)
TotalVariation = _register(TotalVariation)
PR = _register(PR, data=("lam",))

DIVERGENCES = {
    "kl": KL(),
    "reverse_kl": ReverseKL(),
    "pearson": Pearson(),
    "hellinger": Hellinger(),
    "jensen_shannon": JensenShannon(),
    "total_variation": TotalVariation(),
    "pr": PR(),
}


def concrete_nonpositive(x) -> bool:
  """True when `x` is concrete (not traced) and has an element <= 0."""
  return not isinstance(x, jax.core.Tracer) and bool(np.any(np.asarray(x) <= 0))


def get(name: str, **params) -> FDivergence:
  """The table's divergence `name`, with parameters replaced (e.g. lam=).

  Args:
    name: a key of `DIVERGENCES`.
    **params: fields to set, e.g. `get("pr", lam=0.5)`.

  Returns:
    The FDivergence instance.
  """
  if name not in DIVERGENCES:
    raise ValueError(f"unknown f-divergence {name!r}; choose from "
                     f"{sorted(DIVERGENCES)}.")
  div = DIVERGENCES[name]
  fields = {f.name for f in dataclasses.fields(div)}
  unknown = set(params) - fields
  if unknown:
    raise ValueError(f"f-divergence {name!r} has no parameters "
                     f"{sorted(unknown)}; it takes {sorted(fields) or 'none'}.")
  if "lam" in params and concrete_nonpositive(params["lam"]):
    raise ValueError(f"`lam` must be > 0; got {params['lam']}.")
  return dataclasses.replace(div, **params)


def variational_bound(div: FDivergence, t_real: jax.Array,
                      t_generated: jax.Array) -> jax.Array:
  """The dual lower bound E_P[T] - E_Q[f*(T)] <= D_f(P || Q) from samples.

  Maximised over critics T it equals D_f, at T = f'(p/q). Pass critic values
  already inside dom f* (see `FDivergence.output_activation`).

  Args:
    div: an FDivergence.
    t_real: (n,) critic values on real samples.
    t_generated: (m,) critic values on generated samples.

  Returns:
    A scalar (differentiable in the critic values).
  """
  return jnp.mean(t_real) - jnp.mean(div.conjugate(t_generated))
