"""The discriminator (critic) that estimates the density ratio r = p / q.

An MLP T(x) = g.output_activation(v(x)) trained to maximise the dual bound of
an auxiliary f-divergence g (`ops.fdiv.variational_bound`),

  max_T  E_P[T(x)] - E_Q[g*(T(x))]  <=  D_g(P || Q),

whose maximiser is T = g'(p/q), so the ratio estimate is r_hat = (g*)'(T)
(`FDivergence.ratio_from_critic`; Nowozin et al. 2016). Verine et al. (2023)
use the Pearson chi^2 as g because the PR-divergence's own conjugate is
piecewise linear and carries no ratio. Inputs are standardised with the
flow's data normaliser; a class-conditional critic also sees one_hot(label).

With `fourier_features` > 0 the first layer is sin(W x + b), W initialised
N(0, fourier_scale^2) (in units of the data's standard deviation) and
trained: a plain MLP is biased towards smooth functions and cannot resolve
a ratio that changes over a fraction of the data's scale, such as p / q
around the 8 narrow modes of the 2-D ring (Tancik et al. 2020). Measured on
an MLE-pretrained ring flow after 1,000 critic steps, the share of model
samples whose side of lam r = 1 the critic gets right rose from 0.78 to
0.93 at lam = 1 and from 0.86 to 0.93-0.97 at lam = 10 with 128 features
at scale 10.

References:
  Nowozin, Cseke, Tomioka. f-GAN: Training Generative Neural Samplers using
  Variational Divergence Minimization. NeurIPS 2016.
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023 (auxiliary divergence, `--which_div Chi2`).
  Tancik, Srinivasan, Mildenhall, et al. Fourier Features Let Networks
  Learn High Frequency Functions in Low Dimensional Domains. NeurIPS 2020.
"""

import dataclasses
import math
from typing import Optional, Tuple

from flax import linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from gendiag.ops import fdiv


class CriticNet(nn.Module):
  """[sin(W x + b)], Dense-GELU layers, then one real output v(x) per row."""
  hidden_sizes: Tuple[int, ...]
  fourier_features: int = 0
  fourier_scale: float = 10.0

  @nn.compact
  def __call__(self, x, context=None):
    if self.fourier_features:
      x = jnp.sin(nn.Dense(
          self.fourier_features, precision=lax.Precision.HIGHEST,
          kernel_init=nn.initializers.normal(self.fourier_scale),
          bias_init=nn.initializers.uniform(2 * math.pi))(x))
    h = x if context is None else jnp.concatenate([x, context], axis=-1)
    for width in self.hidden_sizes:
      h = nn.gelu(nn.Dense(width, precision=lax.Precision.HIGHEST)(h))
    return nn.Dense(1, precision=lax.Precision.HIGHEST)(h)[..., 0]


@dataclasses.dataclass(frozen=True)
class Discriminator:
  """A critic for the auxiliary divergence `auxiliary` (see module docstring).

  Attributes:
    auxiliary: the f-divergence whose dual the critic maximises; must have a
      ratio (`ratio_from_critic`), e.g. fdiv.get('pearson').
    hidden_sizes: MLP widths.
    ratio_range: (min, max) the ratio estimate is clipped to (Verine et al.
      clamp the chi^2 critic for the same reason: stability).
    fourier_features: width of the sin(W x + b) input layer; 0 for none.
    fourier_scale: initial standard deviation of W (per standardised unit).
  """
  auxiliary: fdiv.FDivergence
  hidden_sizes: Tuple[int, ...] = (64, 64)
  ratio_range: Tuple[float, float] = (1e-3, 1e3)
  fourier_features: int = 0
  fourier_scale: float = 10.0

  def __post_init__(self):
    object.__setattr__(self, "hidden_sizes",
                       tuple(int(h) for h in self.hidden_sizes))
    object.__setattr__(self, "ratio_range",
                       tuple(float(v) for v in self.ratio_range))
    try:
      self.auxiliary.ratio_from_critic(jnp.zeros(()))
    except NotImplementedError as e:
      raise ValueError(
          f"auxiliary divergence {self.auxiliary.name!r} gives no density "
          "ratio; use a smooth one such as 'pearson', 'kl' or "
          "'jensen_shannon'.") from e
    lo, hi = self.ratio_range
    if not 0 < lo < hi:
      raise ValueError(f"`ratio_range` must satisfy 0 < min < max; got "
                       f"{self.ratio_range}.")
    if int(self.fourier_features) != self.fourier_features or (
        self.fourier_features < 0):
      raise ValueError(f"`fourier_features` must be an integer >= 0; got "
                       f"{self.fourier_features}.")
    if not self.fourier_scale > 0:
      raise ValueError(f"`fourier_scale` must be > 0; got "
                       f"{self.fourier_scale}.")
    object.__setattr__(self, "fourier_features", int(self.fourier_features))
    object.__setattr__(self, "fourier_scale", float(self.fourier_scale))

  @property
  def net(self) -> CriticNet:
    return CriticNet(self.hidden_sizes, self.fourier_features,
                     self.fourier_scale)

  def init(self, key, dim: int, num_classes: int = 0):
    context = jnp.zeros((1, num_classes)) if num_classes else None
    return self.net.init(key, jnp.zeros((1, dim)), context)["params"]

  def critic(self, params, flow, x, labels=None) -> jax.Array:
    """(n,) critic values T(x) inside dom g*."""
    if flow.loc is not None:
      x = (x - jnp.asarray(flow.loc)) / jnp.asarray(flow.scale)
    context = None
    if flow.num_classes:
      context = jax.nn.one_hot(labels, flow.num_classes)
    v = self.net.apply({"params": params}, x, context)
    return self.auxiliary.output_activation(v)

  def dual_loss(self, params, flow, x_real, x_generated, labels_real=None,
                labels_generated=None) -> jax.Array:
    """-(E_P[T] - E_Q[g*(T)]): minimised by the critic's optimiser."""
    return -fdiv.variational_bound(
        self.auxiliary, self.critic(params, flow, x_real, labels_real),
        self.critic(params, flow, x_generated, labels_generated))

  def ratio(self, params, flow, x, labels=None,
            critic_values: Optional[jax.Array] = None) -> jax.Array:
    """(n,) r_hat(x) = clip((g*)'(T(x)), *ratio_range), an estimate of p/q."""
    t = self.critic(params, flow, x, labels) if critic_values is None else (
        critic_values)
    return jnp.clip(self.auxiliary.ratio_from_critic(t), *self.ratio_range)
