"""Kernel Inception Distance: the unbiased MMD^2 averaged over subsets.

KID = mean over S subsets of the unbiased MMD^2 (`gendiag.metrics.mmd`) of
`subset_size` rows drawn without replacement from each set, with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3. Each subset's S_XX' and S_YY'
are summed from the upper triangle of their symmetric Gram matrices
(`symmetric_kernel_sum`: 3/4 of the kernel evaluations with two row blocks,
so 5/6 of the subset's total), all kernel sums are blocked, and with a mesh
the subsets are split over its devices. One jitted program computes the
subsets and their summary.

References:
  Binkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs", ICLR 2018
  (KID).
"""

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec

from gendiag import _checks
from gendiag import _results
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import distances
from gendiag.ops import kernels
from gendiag.ops import sharding


@_results.result(static=("num_subsets", "subset_size"))
class KIDResult:
  """KID = mean over subsets of the unbiased polynomial-kernel MMD^2.

  Attributes:
    mean: the KID estimate.
    std: standard deviation over subsets (ddof 0, as torch-fidelity and
      torchmetrics report "kid_std").
    stderr: std (ddof 1) / sqrt(num_subsets): the Monte Carlo error of the
      subset average. It ignores the sampling of the full sets; use a
      bootstrap for a confidence interval of the population value.
    values: (num_subsets,) per-subset estimates.
  """
  mean: jax.Array
  std: jax.Array
  stderr: jax.Array
  values: jax.Array
  num_subsets: int
  subset_size: int


def _row_sums(kernel, a, b, weights):
  """K(a, b) @ weights: the kernel block's weighted row sums.

  A matrix-vector product rather than `jnp.sum(K, axis=1)`: on XLA CPU a
  reduction of a matmul's output is fused into the matmul, which then runs
  at about half its speed; the product keeps the matmul alone.
  """
  return jnp.matmul(kernel(a, b), weights, precision=distances.HIGHEST)


def symmetric_kernel_sum(kernel, a, *, block_size):
  """S' = sum_{i != j} k(a_i, a_j) from the upper triangle of K_AA.

  The rows of `a` are split into nb >= 2 balanced blocks A_1..A_nb (nb =
  ceil(s / block_size), at least 2) and, k being symmetric,

    S' = sum_p S'(A_p, A_p) + 2 sum_{p < q} S(A_p, A_q),

  computed as one row panel per block, K(A_p, [A_p; ...; A_nb]), its diagonal
  zeroed and its row sums weighted 1 (own block) or 2 (later blocks): s^2
  (nb + 1) / (2 nb) kernel evaluations instead of s^2 (3/4 with nb = 2).

  Args:
    kernel: a symmetric kernel.
    a: (s, d) rows.
    block_size: the most rows per block (at least two blocks are used).

  Returns:
    The scalar S'.
  """
  s = a.shape[0]
  rows = distances.balanced_block(s, min(block_size, math.ceil(s / 2)))
  total = jnp.zeros((), a.dtype)
  for start in range(0, s, rows):
    stop = min(start + rows, s)
    cols = jnp.arange(s - start)
    weights = jnp.where(cols < stop - start, 1.0, 2.0).astype(a.dtype)
    k = kernel(a[start:stop], a[start:])
    k = jnp.where(jnp.arange(stop - start)[:, None] == cols[None, :], 0.0, k)
    total = total + jnp.sum(jnp.matmul(k, weights,
                                       precision=distances.HIGHEST))
  return total


def subset_mmd2(x, y, kernel, *, block_size, s_xx=None):
  """Unbiased MMD^2 of one subset pair, K_XX and K_YY by their symmetry.

  S_XX' (unless given) and S_YY' from `symmetric_kernel_sum`, S_XY = sum of
  K(X, Y) by row blocks of x; the estimator is `mmd.combine_sums`'s unbiased one (the same
  value as `mmd.mmd2(..., "unbiased", ...)` up to float32 summation order).
  """
  if s_xx is None:
    s_xx = symmetric_kernel_sum(kernel, x, block_size=block_size)
  s_yy = symmetric_kernel_sum(kernel, y, block_size=block_size)
  ones = jnp.ones((y.shape[0],), y.dtype)
  s_xy = jnp.sum(distances.map_row_blocks(
      lambda xb, _: _row_sums(kernel, xb, y, ones), x,
      block_size=block_size))
  return mmd_lib.combine_sums(s_xx, s_yy, s_xy, x.shape[0], y.shape[0],
                              "unbiased")


def subset_indices(key, n, m, subset_size):
  """The rows of one KID subset pair: `subset_size` of n and of m, no repeats.

  The draw of every KID subset (and of a reference that rebuilds them):
  key -> (key_real, key_gen) by `jax.random.split`, then `jax.random.choice`
  without replacement on each side.
  """
  key_real, key_gen = jax.random.split(key)
  return (jax.random.choice(key_real, n, (subset_size,), replace=False),
          jax.random.choice(key_gen, m, (subset_size,), replace=False))


def _subset_values(real, generated, kernel, keys, real_sums, subset_size,
                   block_size):
  """Unbiased MMD^2 of one random subset pair per key, one after another
  (S_XX' from `real_sums` where given)."""

  def one_subset(args):
    subset_key, s_xx = args
    rows_real, rows_gen = subset_indices(subset_key, real.shape[0],
                                         generated.shape[0], subset_size)
    return subset_mmd2(real[rows_real], generated[rows_gen], kernel,
                       block_size=block_size, s_xx=s_xx)

  return jax.lax.map(one_subset, (keys, real_sums))


@functools.partial(jax.jit, static_argnames=("num_subsets", "subset_size",
                                             "block_size"))
def _real_sums(real, kernel, key, num_subsets, subset_size, block_size):
  def one_subset(subset_key):
    # kid's own draw, so the real rows are those kid() picks for this key;
    # the generated side's draw (any m >= subset_size) is unused and dropped.
    rows_real, _ = subset_indices(subset_key, real.shape[0], subset_size,
                                  subset_size)
    return symmetric_kernel_sum(kernel, real[rows_real],
                                block_size=block_size)

  return jax.lax.map(one_subset, jax.random.split(key, num_subsets))


def kid_real_sums(real: jax.Array, *, key: jax.Array, num_subsets: int = 100,
                  subset_size: int = 1000,
                  kernel: Optional[distances.Kernel] = None,
                  block_size: int = distances.DEFAULT_BLOCK_SIZE
                  ) -> jax.Array:
  """(num_subsets,) S_XX' = sum_{i != j} k(x_i, x_j) of each KID real subset.

  The real subsets `kid(real, generated, key=key, ...)` draws depend only on
  `key`, `real` and the subset count and size, not on the generated set:
  pass these sums as `kid(..., key=key, real_sums=...)` for every model
  compared with `real` and the real third of each subset's kernel work
  (S_XX') is done once. Same arguments as `kid`.
  """
  _checks.check_positive_int(num_subsets, "num_subsets")
  _checks.check_positive_int(subset_size, "subset_size", minimum=2)
  real = _checks.check_features(real, "real", min_rows=subset_size)
  _checks.check_range(real, "real")
  kernel = kernels.Polynomial() if kernel is None else kernel
  sums = _real_sums(jnp.asarray(real, jnp.float32), kernel, key, num_subsets,
                    subset_size, block_size)
  _checks.check_finite_result(sums, "KID's real kernel sums")
  return sums


@functools.partial(jax.jit, static_argnames=("num_subsets", "subset_size",
                                             "block_size", "mesh"))
def _kid_values(real, generated, kernel, key, real_sums, num_subsets,
                subset_size, block_size, mesh=None):
  """(values, mean, std, stderr): the subsets' MMD^2 and their summary."""
  keys = jax.random.split(key, num_subsets)
  if mesh is None:
    values = _subset_values(real, generated, kernel, keys, real_sums,
                            subset_size, block_size)
    return (values,) + _kid_summary(values)
  # Subsets are independent: each device computes its share of them, with
  # both sets replicated (KID subsets are small by design).
  axes = tuple(mesh.axis_names)
  pad = (-num_subsets) % mesh.size
  keys = jnp.concatenate([keys, keys[:pad]]) if pad else keys
  if real_sums is not None and pad:
    real_sums = jnp.concatenate([real_sums, real_sums[:pad]])
  spec = PartitionSpec(axes)
  keys = sharding.constrain(keys, mesh, spec)
  if real_sums is not None:
    real_sums = sharding.constrain(real_sums, mesh, spec)
  real, generated = (sharding.constrain(a, mesh, PartitionSpec())
                     for a in (real, generated))
  values = jax.shard_map(
      functools.partial(_subset_values, subset_size=subset_size,
                        block_size=block_size),
      mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(),
                           spec, None if real_sums is None else spec),
      out_specs=spec)(real, generated, kernel, keys, real_sums)
  values = sharding.unshard_rows(values, num_subsets, mesh)
  return (values,) + _kid_summary(values)


def kid(real: jax.Array, generated: jax.Array, *, key: jax.Array,
        num_subsets: int = 100, subset_size: int = 1000,
        kernel: Optional[distances.Kernel] = None,
        block_size: int = distances.DEFAULT_BLOCK_SIZE,
        mesh: Optional[Mesh] = None,
        real_sums: Optional[jax.Array] = None) -> KIDResult:
  """Kernel Inception Distance (Binkowski et al. 2018).

  For each of `num_subsets` subsets, `subset_size` rows are drawn without
  replacement from each set (independently per subset, seeded by `key`) and
  the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 is computed; KID is their
  mean. Same kernel and estimator as torch-fidelity, torchmetrics and
  clean-fid (diagonals of K_XX and K_YY dropped, K_XY kept whole); the kernel's
  constant is dropped, which leaves the value unchanged and cuts float32
  error. KID is unbiased, so it is negative about half the time when P = Q.

  Unlike clean-fid and dgm-eval, a sample smaller than `subset_size` is an
  error, not silently clipped: pass subset_size=min(n, m) explicitly.

  Inputs: array-likes and integer arrays are cast to float32; values
  beyond float32's safe range for squared distances and products,
  |x| > 7.2e16 / sqrt(d), raise ValueError, as does a
  non-finite KID (the cubic kernel overflows from |x| ~ 1e6; standardise
  the features).

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    key: a `jax.random` key choosing the subsets.
    num_subsets: number of subsets (100 by convention).
    subset_size: rows per subset from each side (1000 by convention).
    kernel: default `Polynomial()` (degree 3, gamma 1/d, coef0 1).
    block_size: rows per block inside a subset.
    mesh: split the subsets over this mesh's devices (same values as without).
    real_sums: `kid_real_sums(real, key=key, ...)` with this key, subset
      count and size and kernel, shared by every model compared with `real`
      (their real subsets are the same); None computes them.

  Returns:
    A `KIDResult` (mean, std over subsets, standard error, per-subset values).
  """
  _checks.check_positive_int(num_subsets, "num_subsets")
  _checks.check_positive_int(subset_size, "subset_size", minimum=2)
  _checks.check_mesh("kid", mesh, real=real, generated=generated)
  _checks.check_same_key(key, "kid", real, generated)
  real, generated = _checks.check_pair(real, generated, min_rows=2)
  _checks.fit_range((real, generated), ("real", "generated"), invariant=False)
  smallest = min(real.shape[0], generated.shape[0])
  if subset_size > smallest:
    raise ValueError(
        f"subset_size={subset_size} exceeds the smaller sample ({smallest} "
        f"rows); pass subset_size<={smallest} or more samples.")
  kernel = kernels.Polynomial() if kernel is None else kernel
  if real_sums is not None:
    real_sums = jnp.asarray(real_sums, jnp.float32)
    if real_sums.shape != (num_subsets,):
      raise ValueError(
          f"real_sums has shape {real_sums.shape}, not ({num_subsets},): pass "
          "kid_real_sums(real, key=key) with this key, num_subsets and "
          "subset_size.")
  # One program: the subsets and their summary (the first call compiles once).
  values, mean, std, stderr = _kid_values(real, generated, kernel, key,
                                          real_sums, num_subsets, subset_size,
                                          block_size, mesh)
  _checks.check_finite_result(values, "KID")
  return KIDResult(mean=mean, std=std, stderr=stderr, values=values,
                   num_subsets=num_subsets, subset_size=subset_size)


def _kid_summary(values):
  """(mean, std, std(ddof=1) / sqrt(S) or NaN for S = 1) of (S,) values."""
  s = values.shape[0]
  stderr = (jnp.std(values, ddof=1) / jnp.sqrt(s) if s > 1
            else jnp.asarray(jnp.nan, values.dtype))
  return jnp.mean(values), jnp.std(values), stderr
