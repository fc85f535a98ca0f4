"""CMMD: the MMD between CLIP image embeddings (Jayasumana et al. 2024).

  CMMD = 1000 * MMD^2_biased(x, y),  k(a, b) = exp(-|a - b|^2 / (2 sigma^2)),
  sigma = 10, on L2-normalised CLIP ViT-L/14@336px image embeddings,

where MMD^2_biased = mean K_xx + mean K_yy - 2 mean K_xy over the full
matrices, diagonals included (google-research/cmmd `distance.mmd`; the
embedding is the model's projected image embedding divided by its norm).
`cmmd` computes exactly that by default; `estimator="unbiased"` drops the
diagonals (gendiag's variant: no positive bias at small n, and the
statistic of `cmmd_test`, which adds a permutation test and a bootstrap
interval).

Arithmetic. On unit vectors every k is within 2 % of 1, so the three
kernel means (each ~0.99) cancel to a CMMD of ~1e-3 of them: the peer's
float32 sums lose about 1e-4 of CMMD. Here, with s = -|a - b|^2 / (2
sigma^2), k = 1 + s + r(s): the constant cancels exactly in every
estimator; the s term's MMD has a closed form in the means,
  biased    |x_bar - y_bar|^2 / sigma^2,
  unbiased  (|x_bar - y_bar|^2 - v_x / (n - 1) - v_y / (m - 1)) / sigma^2,
  v_x = mean_i |x_i - x_bar|^2 (its -|a|^2/2 - |b|^2/2 parts cancel, and
  E_{i != j} x_i.x_j = |x_bar|^2 - v_x / (n - 1));
and r(s) = exp(s) - 1 - s (~s^2 / 2 <= 8e-5) goes through the blocked,
sharded `gendiag.metrics.mmd` as `Gaussian(sigma, drop_terms=2)`. The
result matches a float64 evaluation of the peer's formula to ~1e-8 (tests).
The permutation test and the bootstrap (`cmmd_test`) run `mmd_test` and
`mmd_bootstrap` with `Gaussian(sigma, drop_terms=1)` (k - 1), accurate to
~1e-6 of CMMD, ample for a p-value and an interval.

References:
  Jayasumana, Ramalingam, Veit, Glasner, Chakrabarti & Kumar, "Rethinking
  FID: Towards a Better Evaluation Metric for Image Generation", CVPR 2024
  (google-research/google-research `cmmd/`).
  Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
"""

from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from gendiag import _checks
from gendiag import _results
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import distances
from gendiag.ops import kernels

SIGMA = 10.0    # google-research/cmmd's _SIGMA
SCALE = 1000.0  # its _SCALE


def _embeddings(real, generated, normalize: bool):
  """Checked float32 sets, each row divided by its L2 norm if `normalize`."""
  real, generated = _checks.check_pair(real, generated, min_rows=2)
  if not normalize:
    return real, generated
  out = []
  for x, name in ((real, "real"), (generated, "generated")):
    norms = jnp.linalg.norm(x, axis=1, keepdims=True)
    if not bool(jnp.all(norms > 0)):
      raise ValueError(f"`{name}` has rows of norm 0, which cannot be "
                       "L2-normalised; drop them or pass normalize=False.")
    out.append(x / norms)
  return tuple(out)


def _kernel(sigma, drop_terms):
  if not float(sigma) > 0:
    raise ValueError(f"`sigma` must be > 0; got {sigma!r} (CMMD's is 10).")
  return kernels.Gaussian(float(sigma), drop_terms=drop_terms)


@jax.jit
def _linear_mmd2(x, y):
  """The MMD^2 of k(a, b) = -|a - b|^2 / 2 by the closed forms above:
  (biased, unbiased)."""
  def mean(a):  # two passes: the second adds back the first's rounding
    first = jnp.mean(a, axis=0)
    return first + jnp.mean(a - first, axis=0)
  x_bar, y_bar = mean(x), mean(y)
  gap = jnp.sum((x_bar - y_bar) ** 2)
  v_x = jnp.mean(jnp.sum((x - x_bar) ** 2, axis=1))
  v_y = jnp.mean(jnp.sum((y - y_bar) ** 2, axis=1))
  return gap, gap - v_x / (x.shape[0] - 1) - v_y / (y.shape[0] - 1)


def cmmd(real: jax.Array, generated: jax.Array, *,
         estimator: str = "biased", normalize: bool = True,
         sigma: float = SIGMA, scale: float = SCALE,
         block_size: int = distances.DEFAULT_BLOCK_SIZE,
         mesh: Optional[Mesh] = None) -> jax.Array:
  """CMMD between two sets of CLIP embeddings (module docstring).

  Args:
    real: (n, d) CLIP image embeddings of real images (CMMD: ViT-L/14@336px
      projected embeddings, d = 768).
    generated: (m, d) embeddings of generated images.
    estimator: "biased" (CMMD's, default) or "unbiased".
    normalize: divide each row by its L2 norm first (CMMD's embedding is
      normalised; normalising twice changes nothing).
    sigma: the Gaussian kernel's bandwidth (CMMD: 10).
    scale: the factor on MMD^2 (CMMD: 1000).
    block_size: rows per block of the kernel sums.
    mesh: shard both sets by rows over this mesh's devices.

  Returns:
    Scalar CMMD (lower is better; 0 for identical sets with "biased").
  """
  if estimator not in ("biased", "unbiased"):
    raise ValueError(f"estimator must be 'biased' (CMMD's) or 'unbiased'; "
                     f"got {estimator!r}.")
  real, generated = _embeddings(real, generated, normalize)
  remainder = mmd_lib.mmd(real, generated, kernel=_kernel(sigma, 2),
                          estimator=estimator, block_size=block_size,
                          mesh=mesh)
  linear = _linear_mmd2(real, generated)[estimator == "unbiased"]
  return scale * (linear / float(sigma) ** 2 + remainder)


@_results.result(static=("estimator", "num_permutations", "num_resamples",
                         "level"))
class CMMDResult:
  """CMMD with its permutation test and bootstrap interval.

  Attributes:
    cmmd: the CMMD statistic (the `estimator`'s MMD^2 times `scale`).
    ci_low, ci_high: the central `level` percentile bootstrap interval.
    p_value: the permutation test's p-value of P = Q.
    estimator, num_permutations, num_resamples, level: the settings.
  """
  cmmd: jax.Array
  ci_low: jax.Array
  ci_high: jax.Array
  p_value: jax.Array
  estimator: str
  num_permutations: int
  num_resamples: int
  level: float


def cmmd_test(real: jax.Array, generated: jax.Array, *, key: jax.Array,
              estimator: str = "unbiased", num_permutations: int = 200,
              num_resamples: int = 200, level: float = 0.95,
              normalize: bool = True, sigma: float = SIGMA,
              scale: float = SCALE,
              block_size: int = distances.DEFAULT_BLOCK_SIZE,
              mesh: Optional[Mesh] = None) -> CMMDResult:
  """CMMD, a permutation test of P = Q and a bootstrap interval.

  The statistic is `cmmd`'s; the p-value and the interval are
  `mmd_lib.mmd_test`'s and `mmd_lib.mmd_bootstrap`'s with CMMD's kernel
  (minus 1), times `scale`.

  Args:
    real, generated: (n, d), (m, d) CLIP image embeddings.
    key: a `jax.random` key (split for the permutations and resamples).
    estimator: "unbiased" (default) or "biased" (CMMD's own).
    num_permutations: relabellings of the permutation test.
    num_resamples: bootstrap resamples of the interval.
    level: the interval's coverage.
    normalize, sigma, scale, block_size, mesh: as in `cmmd`.

  Returns:
    A `CMMDResult`.
  """
  if estimator not in ("biased", "unbiased"):
    raise ValueError(f"estimator must be 'biased' or 'unbiased'; got "
                     f"{estimator!r}.")
  value = cmmd(real, generated, estimator=estimator, normalize=normalize,
               sigma=sigma, scale=scale, block_size=block_size, mesh=mesh)
  real, generated = _embeddings(real, generated, normalize)
  kernel = _kernel(sigma, 1)
  key_test, key_boot = jax.random.split(key)
  test = mmd_lib.mmd_test(real, generated, key=key_test, kernel=kernel,
                          num_permutations=num_permutations,
                          estimator=estimator, block_size=block_size,
                          mesh=mesh)
  boot = mmd_lib.mmd_bootstrap(real, generated, key=key_boot, kernel=kernel,
                               num_resamples=num_resamples, level=level,
                               estimator=estimator, block_size=block_size,
                               mesh=mesh)
  return CMMDResult(cmmd=value, ci_low=scale * boot.ci_low,
                    ci_high=scale * boot.ci_high, p_value=test.p_value,
                    estimator=estimator, num_permutations=num_permutations,
                    num_resamples=num_resamples, level=level)


__all__ = ("CMMDResult", "SCALE", "SIGMA", "cmmd", "cmmd_test")
