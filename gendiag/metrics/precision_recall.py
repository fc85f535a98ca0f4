"""k-NN precision and recall: improved P/R and precision/recall/density/coverage.

Both families describe each set by the union of balls B(x, NND_k(x)) around
its points, NND_k(x) the distance to x's k-th nearest other point of the same
set, and count memberships between the sets:

  precision = (1/M) sum_j 1[Y_j in some real ball]       (fidelity)
  recall    = (1/N) sum_i 1[X_i in some generated ball]  (diversity)
  density   = (1/(k M)) sum_j #{i: Y_j in B(X_i)}         (Naeem et al.)
  coverage  = (1/N) sum_i 1[B(X_i) contains some Y_j]     (Naeem et al.)

with X the N real and Y the M generated features. The two papers differ in
one comparison: Kynkaanniemi et al. count a point on a ball's boundary as
inside (`<=`, k = 3), the `prdc` package does not (`<`, k = 5).

Computation: three blocked passes, none holding more than block_size x
max(N, M) distances. The radii of each set come from one row-blocked pass
with a top-k per block, for all requested k at once; a third pass walks the
generated rows in blocks, computes their distances to every real row and
reduces them at once: per generated row (membership, ball counts, realism)
and, carried across blocks, per real row (nearest generated distance,
membership in the generated balls). Asking for several k (e.g. k=(3, 5))
costs the same three passes as one k.
"""

import functools
import math
from typing import Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp

from gendiag import _checks
from gendiag import _results
from gendiag.ops import distances

# Kynkaanniemi et al.'s realism score divides by the distance plus this.
REALISM_EPS = 1e-5

Ks = Union[int, Sequence[int]]


def _normalise_ks(k: Ks) -> Tuple[int, ...]:
  ks = (k,) if isinstance(k, int) or not hasattr(k, "__len__") else tuple(k)
  if not ks:
    raise ValueError("`k` must be a positive integer or a non-empty sequence "
                     "of them.")
  for value in ks:
    _checks.check_positive_int(value, "k")
  return tuple(int(v) for v in ks)


def _check_inputs(real, generated, ks):
  need = max(ks) + 2
  _checks.check_pair(real, generated, min_rows=need)


def _median(x):
  """Column medians of (n, K), as np.percentile(x, 50, axis=0) computes them.

  A sort and two gathers: `jnp.percentile` costs ten times more to compile.
  """
  n = x.shape[0]
  s = jnp.sort(x, axis=0)
  return 0.5 * (s[(n - 1) // 2] + s[n // 2])


@functools.partial(jax.jit, static_argnames=(
    "ks", "strict", "realism", "block_size"))
def _manifold_pass(real, generated, *, ks, strict, realism, block_size):
  """The three passes. Leading axis K = len(ks) on every k-dependent output."""
  n, m = real.shape[0], generated.shape[0]

  # One top-k pass per row block over all columns (col_block_size=n or m).
  radii = lambda x: distances.knn_radii(x, ks, block_size=block_size,  # noqa: E731
                                        col_block_size=x.shape[0])
  if n == m:  # One compiled radius pass, run on both sets in turn.
    real_radii, gen_radii = lax.map(radii, jnp.stack([real, generated]))
  else:
    real_radii, gen_radii = radii(real), radii(generated)
  inside = jnp.less if strict else jnp.less_equal
  # Realism (Kynkaanniemi et al.): balls with radius above the median are
  # dropped (radius 0), so outliers of the real set do not vouch for samples.
  pruned = jnp.where(real_radii > _median(real_radii), 0.0, real_radii)

  b = distances.balanced_block(m, block_size)
  num_blocks = math.ceil(m / b)
  pad = num_blocks * b - m
  gen_blocks = jnp.pad(generated, ((0, pad), (0, 0))).reshape(
      num_blocks, b, generated.shape[1])
  rad_blocks = jnp.pad(gen_radii, ((0, pad), (0, 0))).reshape(
      num_blocks, b, len(ks))
  valid = (jnp.arange(num_blocks * b) < m).reshape(num_blocks, b)

  def step(carry, blk):
    nearest, covered_by_gen = carry
    gb, gr, ok = blk
    dist = jnp.sqrt(distances.sq_distances(gb, real))  # (b, n)
    if pad:
      dist = jnp.where(ok[:, None], dist, jnp.inf)
    counts, scores, recall_hits = [], [], []
    for i in range(len(ks)):
      counts.append(jnp.sum(inside(dist, real_radii[None, :, i]), axis=1,
                            dtype=jnp.int32))
      if realism:
        scores.append(jnp.max(pruned[None, :, i] / (dist + REALISM_EPS),
                              axis=1))
      recall_hits.append(jnp.any(inside(dist, gr[:, i, None]), axis=0))
    carry = (jnp.minimum(nearest, jnp.min(dist, axis=0)),
             covered_by_gen | jnp.stack(recall_hits, axis=1))
    out = jnp.stack(counts, 1), (jnp.stack(scores, 1) if realism else None)
    return carry, out

  init = (jnp.full((n,), jnp.inf, real.dtype),
          jnp.zeros((n, len(ks)), bool))
  (nearest_gen, real_in_gen), (counts, scores) = lax.scan(
      step, init, (gen_blocks, rad_blocks, valid))

  def rows(a):
    return a.reshape((num_blocks * b,) + a.shape[2:])[:m].T  # (K, m)

  counts = rows(counts)
  return dict(real_radii=real_radii.T, generated_radii=gen_radii.T,
              generated_in_real=counts > 0, counts=counts,
              realism=None if scores is None else rows(scores),
              real_in_generated=real_in_gen.T,
              covered=inside(nearest_gen[None, :], real_radii.T),
              nearest_generated=nearest_gen)


def _squeeze(k, tree):
  """Drops the K axis when `k` was a single int."""
  if isinstance(k, int) or not hasattr(k, "__len__"):
    return jax.tree.map(lambda a: a[0], tree)
  return tree


@_results.result(static=("k",))
class ImprovedPRResult:
  """Improved precision and recall (Kynkaanniemi et al. 2019).

  With one k every field is as listed; with a sequence of k each gets a
  leading axis of len(k).

  Attributes:
    precision: () fraction of generated samples inside the real manifold.
    recall: () fraction of real samples inside the generated manifold.
    realism: (M,) realism score of each generated sample,
      max_i NND_k(X_i) / (|Y_j - X_i| + 1e-5) over real balls with radius at
      most the median; >= 1 means inside the pruned real manifold, and low
      values mark the least realistic samples.
    generated_in_real_manifold: (M,) bool, which generated samples count
      towards precision (False = off the real manifold).
    real_in_generated_manifold: (N,) bool, which real samples count towards
      recall (False = not covered by the model).
    real_radii: (N,) NND_k of each real sample.
    generated_radii: (M,) NND_k of each generated sample.
    k: the neighbourhood size(s).
  """
  precision: jax.Array
  recall: jax.Array
  realism: jax.Array
  generated_in_real_manifold: jax.Array
  real_in_generated_manifold: jax.Array
  real_radii: jax.Array
  generated_radii: jax.Array
  k: Union[int, Tuple[int, ...]] = 3


@_results.result(static=("k",))
class PRDCResult:
  """Precision, recall, density and coverage (Naeem et al. 2020).

  With one k every field is as listed; with a sequence of k each gets a
  leading axis of len(k).

  Attributes:
    precision: () fraction of generated samples inside some real ball.
    recall: () fraction of real samples inside some generated ball.
    density: () mean number of real balls containing a generated sample,
      divided by k; about 1 when P = Q, above 1 when samples crowd real
      regions, unbounded.
    coverage: () fraction of real balls containing a generated sample.
    generated_in_real_manifold: (M,) bool, per-sample precision flags.
    real_in_generated_manifold: (N,) bool, per-sample recall flags.
    generated_neighbor_counts: (M,) int32, real balls containing each
      generated sample (the density's numerator).
    real_covered: (N,) bool, which real balls contain a generated sample
      (False = a real region the model misses).
    real_radii: (N,) NND_k of each real sample.
    generated_radii: (M,) NND_k of each generated sample.
    k: the neighbourhood size(s).
  """
  precision: jax.Array
  recall: jax.Array
  density: jax.Array
  coverage: jax.Array
  generated_in_real_manifold: jax.Array
  real_in_generated_manifold: jax.Array
  generated_neighbor_counts: jax.Array
  real_covered: jax.Array
  real_radii: jax.Array
  generated_radii: jax.Array
  k: Union[int, Tuple[int, ...]] = 5


def improved_precision_recall(
    real: jax.Array, generated: jax.Array, *, k: Ks = 3,
    block_size: int = distances.DEFAULT_BLOCK_SIZE) -> ImprovedPRResult:
  """Improved precision and recall with k-NN hyperspheres.

  precision = (1/M) sum_j 1[exists i: |Y_j - X_i| <= NND_k(X_i)]
  recall    = (1/N) sum_i 1[exists j: |X_i - Y_j| <= NND_k(Y_j)]

  NND_k is the distance to the k-th nearest other point of the same set
  (duplicates count, at distance 0). Boundary points are inside (`<=`).

  Args:
    real: (N, D) real features, N >= k + 2.
    generated: (M, D) generated features, M >= k + 2.
    k: neighbourhood size, or a sequence of sizes computed in one pass
      (the outputs then get a leading axis).
    block_size: rows per distance block (memory ~ block_size x max(N, M)
      floats).

  Returns:
    ImprovedPRResult.

  References:
    Kynkaanniemi, Karras, Laine, Lehtinen, Aila. Improved Precision and
    Recall Metric for Assessing Generative Models. NeurIPS 2019. Follows the
    official code (k = 3, `<=`, realism radii pruned above the 50th
    percentile) except that the realism score is the paper's ratio of
    Euclidean distances; the code's is its square (same ranking, same
    threshold 1).
  """
  ks = _normalise_ks(k)
  _check_inputs(real, generated, ks)
  out = _manifold_pass(jnp.asarray(real), jnp.asarray(generated), ks=ks,
                       strict=False, realism=True, block_size=block_size)
  fields = dict(
      precision=jnp.mean(out["generated_in_real"], axis=1),
      recall=jnp.mean(out["real_in_generated"], axis=1),
      realism=out["realism"],
      generated_in_real_manifold=out["generated_in_real"],
      real_in_generated_manifold=out["real_in_generated"],
      real_radii=out["real_radii"], generated_radii=out["generated_radii"])
  return ImprovedPRResult(**_squeeze(k, fields), k=_static_k(k, ks))


def prdc(real: jax.Array, generated: jax.Array, *, k: Ks = 5,
         block_size: int = distances.DEFAULT_BLOCK_SIZE) -> PRDCResult:
  """Precision, recall, density and coverage with k-NN balls.

  With B_i = B(X_i, NND_k(X_i)) and strict membership (`<`):
    precision = (1/M) sum_j 1[Y_j in union_i B_i]
    recall    = (1/N) sum_i 1[X_i in union_j B(Y_j, NND_k(Y_j))]
    density   = (1/(k M)) sum_j sum_i 1[Y_j in B_i]
    coverage  = (1/N) sum_i 1[min_j |X_i - Y_j| < NND_k(X_i)]

  When P = Q, E[density] = 1 and E[coverage] = 1 - prod_{i<k} (N-1-i) /
  (N-1+M-i) (0.969 for k = 5, N = M = 10000).

  Args:
    real: (N, D) real features, N >= k + 2.
    generated: (M, D) generated features, M >= k + 2.
    k: neighbourhood size, or a sequence of sizes computed in one pass
      (the outputs then get a leading axis).
    block_size: rows per distance block (memory ~ block_size x max(N, M)
      floats).

  Returns:
    PRDCResult.

  References:
    Naeem, Oh, Uh, Choi, Yoo. Reliable Fidelity and Diversity Metrics for
    Generative Models. ICML 2020. Matches `prdc.compute_prdc(real, fake,
    nearest_k)` (strict `<`, radius = (k+1)-th smallest distance including
    self) up to float32 near-ties; k = 5 as in the paper.
  """
  ks = _normalise_ks(k)
  _check_inputs(real, generated, ks)
  out = _manifold_pass(jnp.asarray(real), jnp.asarray(generated), ks=ks,
                       strict=True, realism=False, block_size=block_size)
  k_col = jnp.asarray(ks, jnp.float32)[:, None]
  fields = dict(
      precision=jnp.mean(out["generated_in_real"], axis=1),
      recall=jnp.mean(out["real_in_generated"], axis=1),
      density=jnp.mean(out["counts"] / k_col, axis=1),
      coverage=jnp.mean(out["covered"], axis=1),
      generated_in_real_manifold=out["generated_in_real"],
      real_in_generated_manifold=out["real_in_generated"],
      generated_neighbor_counts=out["counts"], real_covered=out["covered"],
      real_radii=out["real_radii"], generated_radii=out["generated_radii"])
  return PRDCResult(**_squeeze(k, fields), k=_static_k(k, ks))


def _static_k(k, ks):
  return ks[0] if isinstance(k, int) or not hasattr(k, "__len__") else ks
