"""Normalizing flows: distrax bijectors with flax conditioners.

A `Flow` is a frozen, hashable description (so it can be closed over by
`jit`) with pure methods on a flax parameter pytree. From the standard normal
base z ~ N(0, I_d) to data x, layer by layer:

  y_0 = z
  y_l = perm_l(coupling_l(y_{l-1}))          l = 1..num_layers
  x   = loc + scale * y_L                    fixed data normaliser

  log q(x) = log N(z; 0, I) + sum_l log|det d y_{l-1} / d y_l| - sum log scale

Each coupling is a distrax `MaskedCoupling`: the first floor(d/2) coordinates
(mask True) pass unchanged and condition an elementwise bijector of the
others,

  spline  a rational-quadratic spline on [-spline_range, spline_range]
          (identity outside, `num_bins` bins; Durkan et al. 2019)
  affine  y = x exp(s) + t, s = max_log_scale tanh(s_raw / max_log_scale)
          (RealNVP; Dinh et al. 2017; the tanh bounds the scale)

whose parameters come from an MLP conditioner (flax) whose last layer is
zero-initialised, so the untrained flow is the identity (distrax's
`examples/flow.py`). Between couplings a fixed permutation (reversal, or a
seeded random permutation) makes every coordinate transformed in turn.
Class-conditional flows (num_classes > 0) feed one_hot(label) to every
conditioner next to the masked input.

`loc`/`scale` (tuples, static) are the data's mean and standard deviation
(`Flow.normalized_for(x)`), so the learned layers work on standardised data.

References:
  Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
  Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
"""

import dataclasses
import math
from typing import Optional, Tuple

import distrax
from flax import linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

KINDS = ("spline", "affine")
PERMUTATIONS = ("reverse", "random")


class Conditioner(nn.Module):
  """MLP from (masked input, optional context) to (..., dim, num_params).

  The output layer's kernel and bias are zero, so the coupling starts at its
  identity parameters.
  """
  dim: int
  num_params: int
  hidden_sizes: Tuple[int, ...]

  @nn.compact
  def __call__(self, x, context=None):
    h = x if context is None else jnp.concatenate([x, context], axis=-1)
    for width in self.hidden_sizes:
      h = nn.gelu(nn.Dense(width, precision=lax.Precision.HIGHEST)(h))
    out = nn.Dense(self.dim * self.num_params, precision=lax.Precision.HIGHEST,
                   kernel_init=nn.initializers.zeros,
                   bias_init=nn.initializers.zeros)(h)
    return out.reshape(x.shape[:-1] + (self.dim, self.num_params))


class Permute(distrax.Bijector):
  """y = x[..., perm]; volume preserving, log|det J| = 0."""

  def __init__(self, perm):
    super().__init__(event_ndims_in=1, is_constant_jacobian=True)
    self._perm = np.asarray(perm)
    self._inverse_perm = np.argsort(self._perm)

  def forward_and_log_det(self, x):
    return x[..., self._perm], jnp.zeros(x.shape[:-1], x.dtype)

  def inverse_and_log_det(self, y):
    return y[..., self._inverse_perm], jnp.zeros(y.shape[:-1], y.dtype)


class _FlowModule(nn.Module):
  """The flax module holding the conditioners; `bijector` builds the chain."""
  flow: "Flow"

  def setup(self):
    f = self.flow
    num_params = 3 * f.num_bins + 1 if f.kind == "spline" else 2
    self.conditioners = [
        Conditioner(f.dim, num_params, tuple(f.hidden_sizes),
                    name=f"coupling_{i}") for i in range(f.num_layers)]

  def bijector(self, labels=None) -> distrax.Bijector:
    """The base-to-data bijector (distrax Chain), given optional labels."""
    f = self.flow
    context = None
    if f.num_classes:
      context = jax.nn.one_hot(labels, f.num_classes)
    mask = np.arange(f.dim) < f.dim // 2
    layers = []
    for i, cond in enumerate(self.conditioners):
      layers.append(distrax.MaskedCoupling(
          mask=mask, conditioner=_bind(cond, context),
          bijector=self._inner_bijector))
      layers.append(Permute(f.permutation_at(i)))
    if f.loc is not None:
      layers.append(distrax.Block(distrax.ScalarAffine(
          shift=jnp.asarray(f.loc, jnp.float32),
          scale=jnp.asarray(f.scale, jnp.float32)), ndims=1))
    return distrax.Chain(layers[::-1])  # Chain applies its last element first.

  def _inner_bijector(self, params):
    f = self.flow
    if f.kind == "spline":
      return distrax.RationalQuadraticSpline(
          params, range_min=-f.spline_range, range_max=f.spline_range,
          boundary_slopes="identity")
    bound = f.max_log_scale
    log_scale = bound * jnp.tanh(params[..., 1] / bound)
    return distrax.ScalarAffine(shift=params[..., 0], log_scale=log_scale)

  def __call__(self, x, labels=None):
    return self.bijector(labels).inverse_and_log_det(x)


def _bind(cond, context):
  return lambda masked: cond(masked, context)


@dataclasses.dataclass(frozen=True)
class Flow:
  """A normalizing flow over a standard normal base (module docstring).

  Attributes:
    dim: data dimension d >= 2.
    kind: 'spline' (rational-quadratic coupling) or 'affine' (RealNVP).
    num_layers: coupling layers.
    hidden_sizes: conditioner MLP widths.
    num_bins: spline bins.
    spline_range: the spline acts on [-B, B] (standardised units).
    max_log_scale: bound on |log scale| of the affine couplings.
    num_classes: 0 for an unconditional flow, else the number of labels.
    permutation: 'reverse' or 'random' (seeded by permutation_seed).
    permutation_seed: seed of the random permutations.
    loc: data mean (d floats) or None for no normaliser.
    scale: data standard deviation (d floats), with loc.
  """
  dim: int
  kind: str = "spline"
  num_layers: int = 4
  hidden_sizes: Tuple[int, ...] = (64, 64)
  num_bins: int = 8
  spline_range: float = 4.0
  max_log_scale: float = 3.0
  num_classes: int = 0
  permutation: str = "reverse"
  permutation_seed: int = 0
  loc: Optional[Tuple[float, ...]] = None
  scale: Optional[Tuple[float, ...]] = None

  def __post_init__(self):
    object.__setattr__(self, "hidden_sizes",
                       tuple(int(h) for h in self.hidden_sizes))
    if self.kind not in KINDS:
      raise ValueError(f"unknown flow kind {self.kind!r}; choose from {KINDS}.")
    if self.permutation not in PERMUTATIONS:
      raise ValueError(f"unknown permutation {self.permutation!r}; choose "
                       f"from {PERMUTATIONS}.")
    for name, minimum in (("dim", 2), ("num_layers", 1), ("num_bins", 1),
                          ("num_classes", 0)):
      value = getattr(self, name)
      if int(value) != value or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got "
                         f"{value}." + (" A coupling flow needs at least two "
                                        "dimensions." if name == "dim" else ""))
    if any(h < 1 for h in self.hidden_sizes):
      raise ValueError(f"`hidden_sizes` must be positive; got "
                       f"{self.hidden_sizes}.")
    for name in ("spline_range", "max_log_scale"):
      if not getattr(self, name) > 0:
        raise ValueError(f"`{name}` must be > 0; got {getattr(self, name)}.")
    if (self.loc is None) != (self.scale is None):
      raise ValueError("give both `loc` and `scale` or neither.")
    if self.loc is not None:
      object.__setattr__(self, "loc", tuple(float(v) for v in self.loc))
      object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
      if len(self.loc) != self.dim or len(self.scale) != self.dim:
        raise ValueError(f"`loc` and `scale` need {self.dim} entries; got "
                         f"{len(self.loc)} and {len(self.scale)}.")
      if not all(s > 0 and math.isfinite(s) for s in self.scale):
        raise ValueError("`scale` must be finite and > 0.")

  def normalized_for(self, x) -> "Flow":
    """This flow with loc/scale set to x's mean and std (std 0 -> 1)."""
    x = np.asarray(x, np.float64)
    check_data(x, self.dim)
    std = x.std(axis=0)
    return dataclasses.replace(self, loc=tuple(x.mean(axis=0)),
                               scale=tuple(np.where(std > 0, std, 1.0)))

  def permutation_at(self, layer: int) -> np.ndarray:
    if self.permutation == "reverse":
      return np.arange(self.dim)[::-1]
    return np.random.default_rng([self.permutation_seed, layer]).permutation(
        self.dim)

  @property
  def module(self) -> _FlowModule:
    return _FlowModule(self)

  def init(self, key: jax.Array):
    """Parameters (a flax 'params' dict) of the identity-initialised flow."""
    labels = jnp.zeros((1,), jnp.int32) if self.num_classes else None
    return self.module.init(key, jnp.zeros((1, self.dim)), labels)["params"]

  def _check_labels(self, labels, n):
    if self.num_classes and labels is None:
      raise ValueError(f"this flow is class-conditional ({self.num_classes} "
                       "classes); pass `labels`.")
    if not self.num_classes and labels is not None:
      raise ValueError("this flow is unconditional; pass labels=None or "
                       "build it with num_classes > 0.")
    if labels is not None and np.shape(labels) != (n,):
      raise ValueError(f"`labels` must have shape ({n},); got "
                       f"{np.shape(labels)}.")

  def bijector(self, params, labels=None) -> distrax.Bijector:
    """The base-to-data distrax bijector with `params` bound."""
    return self.module.bind({"params": params}).bijector(labels)

  def base(self) -> distrax.MultivariateNormalDiag:
    """The base distribution N(0, I_d)."""
    return distrax.MultivariateNormalDiag(jnp.zeros(self.dim),
                                          jnp.ones(self.dim))

  def distribution(self, params) -> distrax.Transformed:
    """distrax.Transformed(N(0, I_d), bijector) of an unconditional flow.

    (distrax samples by vmapping the bijector over samples, which cannot
    carry per-sample labels; conditional flows use `log_prob` and `sample`.)
    """
    if self.num_classes:
      raise ValueError("`distribution` is for unconditional flows; use "
                       "log_prob/sample with labels.")
    return distrax.Transformed(self.base(), self.bijector(params))

  def log_prob(self, params, x: jax.Array, labels=None) -> jax.Array:
    """(n,) log q(x | labels) = log N(T^{-1}(x)) + log|det dT^{-1}/dx|."""
    if np.ndim(x) != 2 or np.shape(x)[1] != self.dim:
      raise ValueError(f"`x` must have shape (n, {self.dim}); got "
                       f"{np.shape(x)}.")
    self._check_labels(labels, np.shape(x)[0])
    z, log_det = self.bijector(params, labels).inverse_and_log_det(x)
    return self.base().log_prob(z) + log_det

  def sample_and_log_prob(self, params, key: jax.Array,
                          num_samples: Optional[int] = None, labels=None):
    """Reparameterised x = T(z), z ~ N(0, I), and log q(x): ((n, d), (n,)).

    log q(x) = log N(z) - log|det dT/dz|. Differentiable in `params` (the
    pathwise gradient). Give `num_samples` for an unconditional flow,
    `labels` (n,) for a conditional one.
    """
    if labels is None:
      if num_samples is None:
        raise ValueError("pass `num_samples` (or `labels` for a "
                         "class-conditional flow).")
      n = int(num_samples)
    else:
      n = int(np.shape(labels)[0])
    self._check_labels(labels, n)
    z = jax.random.normal(key, (n, self.dim))
    x, log_det = self.bijector(params, labels).forward_and_log_det(z)
    return x, self.base().log_prob(z) - log_det

  def sample(self, params, key: jax.Array, num_samples: Optional[int] = None,
             labels=None) -> jax.Array:
    """(n, d) samples (see `sample_and_log_prob`)."""
    return self.sample_and_log_prob(params, key, num_samples, labels)[0]

  def forward(self, params, z, labels=None):
    """x = T(z) and log|det dT/dz|: ((n, d), (n,))."""
    self._check_labels(labels, np.shape(z)[0])
    return self.bijector(params, labels).forward_and_log_det(z)

  def inverse(self, params, x, labels=None):
    """z = T^{-1}(x) and log|det dT^{-1}/dx|: ((n, d), (n,))."""
    self._check_labels(labels, np.shape(x)[0])
    return self.bijector(params, labels).inverse_and_log_det(x)

  def to_dict(self) -> dict:
    """JSON-ready fields (loc/scale as lists)."""
    out = dataclasses.asdict(self)
    for k in ("hidden_sizes", "loc", "scale"):
      if out[k] is not None:
        out[k] = list(out[k])
    return out


def check_data(x, dim: int, name: str = "data"):
  """Raises ValueError unless x is a finite (n, dim) array with n >= 2."""
  shape = np.shape(x)
  if len(shape) != 2 or shape[0] < 2:
    raise ValueError(f"`{name}` must have shape (n >= 2, {dim}); got {shape}.")
  if shape[1] != dim:
    raise ValueError(f"`{name}` has {shape[1]} features but the flow was "
                     f"built with dim={dim}; set the flow's dim to "
                     f"{shape[1]}.")
  if not np.all(np.isfinite(np.asarray(x))):
    raise ValueError(f"`{name}` contains NaN or inf; clean it first.")


def num_params(params) -> int:
  return int(sum(np.size(a) for a in jax.tree.leaves(params)))


def check_labels(flow: Flow, data, labels):
  """Raises ValueError unless `labels` suit `flow` and `data`.

  A class-conditional flow needs (n,) labels in [0, num_classes); an
  unconditional one takes none.
  """
  if flow.num_classes:
    if labels is None:
      raise ValueError("the flow is class-conditional; pass `labels`.")
    labels = np.asarray(labels)
    if labels.shape != (np.shape(data)[0],):
      raise ValueError(f"`labels` must have shape ({np.shape(data)[0]},); "
                       f"got {labels.shape}.")
    if labels.min() < 0 or labels.max() >= flow.num_classes:
      raise ValueError(f"`labels` must lie in [0, {flow.num_classes}); got "
                       f"[{labels.min()}, {labels.max()}].")
  elif labels is not None:
    raise ValueError("the flow is unconditional but `labels` were given; "
                     "build it with num_classes > 0 or drop the labels.")
