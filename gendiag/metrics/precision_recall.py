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

Computation (`gendiag.metrics.manifold`): three blocked passes, none holding more than block_size x
max(N, M) distances. The radii of each set come from one row-blocked pass
with a top-k per block, for all requested k at once; a third pass walks the
generated rows in blocks, computes their distances to every real row and
reduces them at once: per generated row (membership, ball counts, realism)
and, carried across blocks, per real row (nearest generated distance,
membership in the generated balls). Asking for several k (e.g. k=(3, 5))
costs the same three passes as one k.

Sharing work: `improved_pr_and_prdc` gives both metrics (k=3 `<=` and k=5
`<`) from one set of passes, each distance compared both ways; and
`real_radii=manifold_radii(real, k=...)` skips the real radius pass, so
several models scored against one real set pay for its radii once.

Sharding (`mesh=`): the radius passes are `knn.knn_radii` rings, and
the membership pass a `sharding.ring_pair_reduce`: generated rows stay on
their device, the real shards (with their radii and per-row accumulators)
travel the ring, so every distance is computed once, on one device.
"""

import functools
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from gendiag import _checks
from gendiag import _results
from gendiag.metrics import manifold
from gendiag.ops import distances

Ks = manifold.Ks


def _check_inputs(real, generated, ks):
  """(real, generated, s): float arrays rescaled by 2^s (`_checks.rescale`).

  The k-NN memberships are invariant to a common scale, so inputs outside
  [2^-32, 2^32] are brought into float32's safe range exactly.
  """
  for name, x in (("real", real), ("generated", generated)):
    manifold.check_rows(name, x, ks)
  real, generated = _checks.check_pair(real, generated, min_rows=max(ks) + 2)
  (real, generated), s = _checks.rescale(real, generated)
  return real, generated, s


def _unscale_radii(fields, s):
  """Radii back in the caller's units (exact: s is a power-of-two shift)."""
  for name in ("real_radii", "generated_radii"):
    fields[name] = _checks.scale_pow2(fields[name], -s)
  return fields


def _single(k) -> bool:
  """Whether `k` was a single int (results then drop the K axis)."""
  return isinstance(k, int) or not hasattr(k, "__len__")


def _improved(out):
  """`improved_precision_recall`'s fields from the pass's outputs."""
  return dict(
      precision=jnp.mean(out["generated_in_real"], axis=1),
      recall=jnp.mean(out["real_in_generated"], axis=1),
      realism=out["realism"],
      generated_in_real_manifold=out["generated_in_real"],
      real_in_generated_manifold=out["real_in_generated"],
      real_radii=out["real_radii"], generated_radii=out["generated_radii"])


def _density(counts, ks):
  """sum_j counts[:, j] / (k M) for (K, M) int32 counts, from integer sums.

  Integer sums are exact in any order, so the value does not depend on how
  XLA orders the reduction (a float mean differs in its last bits between
  the fused and the separate programs). The counts are split at 2^8 so
  both sums fit int32 (M < 2^23 and N M < 2^39).
  """
  hi = jnp.sum(counts >> 8, axis=1)
  lo = jnp.sum(counts & 255, axis=1)
  total = hi.astype(jnp.float32) * 256.0 + lo.astype(jnp.float32)
  return total / (jnp.asarray(ks, jnp.float32) * counts.shape[1])


def _prdc(out, ks):
  """`prdc`'s fields from the pass's outputs."""
  return dict(
      precision=jnp.mean(out["generated_in_real"], axis=1),
      recall=jnp.mean(out["real_in_generated"], axis=1),
      density=_density(out["counts"], ks),
      coverage=jnp.mean(out["covered"], axis=1),
      generated_in_real_manifold=out["generated_in_real"],
      real_in_generated_manifold=out["real_in_generated"],
      generated_neighbor_counts=out["counts"], real_covered=out["covered"],
      real_radii=out["real_radii"], generated_radii=out["generated_radii"])


@functools.partial(jax.jit, static_argnames=(
    "ipr_ks", "prdc_ks", "block_size", "mesh", "single"))
def _fields(real, generated, real_radii, *, ipr_ks, prdc_ks, block_size,
            mesh, single):
  """(improved P/R's fields, prdc's fields), summaries included, in one program.

  One `manifold_pass` over ks = ipr_ks + prdc_ks: its columns for ipr_ks
  compare with `<=` (and get realism), those for prdc_ks with `<`. An empty
  tuple gives None for that metric. `single` = (drop improved P/R's K axis,
  drop prdc's).
  """
  ks = ipr_ks + prdc_ks
  num_ipr = len(ipr_ks)
  out = manifold.manifold_pass(
      real, generated, ks=ks, strict=(False,) * num_ipr + (True,) * len(
          prdc_ks), realism=(True,) * num_ipr + (False,) * len(prdc_ks),
      block_size=block_size, mesh=mesh, real_radii=real_radii)
  del out["nearest_generated"]

  def take(cols):
    return {name: None if v is None else v[cols] for name, v in out.items()}

  ipr = _improved(take(slice(0, num_ipr))) if ipr_ks else None
  dc = _prdc(take(slice(num_ipr, None)), prdc_ks) if prdc_ks else None
  first = lambda f: None if f is None else jax.tree.map(  # noqa: E731
      lambda a: a[0], f)
  return (first(ipr) if single[0] else ipr, first(dc) if single[1] else dc)


def _run(real, generated, ipr_k, prdc_k, real_radii, block_size, mesh,
         what):
  """Validates, runs `_fields`, returns (ImprovedPRResult, PRDCResult)."""
  ipr_ks = () if ipr_k is None else manifold.normalise_ks(ipr_k)
  prdc_ks = () if prdc_k is None else manifold.normalise_ks(prdc_k)
  ks = ipr_ks + prdc_ks
  _checks.check_mesh(what, mesh, real=real, generated=generated)
  real, generated, s = _check_inputs(real, generated, ks)
  real = jnp.asarray(real)
  if real_radii is not None:
    real_radii = manifold.check_radii(real_radii, real, ks, s)
  ipr, dc = _fields(real, jnp.asarray(generated), real_radii, ipr_ks=ipr_ks,
                    prdc_ks=prdc_ks, block_size=block_size, mesh=mesh,
                    single=(_single(ipr_k), _single(prdc_k)))
  return (None if ipr is None else ImprovedPRResult(
      **_unscale_radii(ipr, s), k=_static_k(ipr_k, ipr_ks)),
          None if dc is None else PRDCResult(
              **_unscale_radii(dc, s), k=_static_k(prdc_k, prdc_ks)))


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
    real_radii: Optional[manifold.ManifoldRadii] = None,
    block_size: int = distances.DEFAULT_BLOCK_SIZE,
    mesh: Optional[Mesh] = None) -> ImprovedPRResult:
  """Improved precision and recall with k-NN hyperspheres.

  precision = (1/M) sum_j 1[exists i: |Y_j - X_i| <= NND_k(X_i)]
  recall    = (1/N) sum_i 1[exists j: |X_i - Y_j| <= NND_k(Y_j)]

  NND_k is the distance to the k-th nearest other point of the same set
  (duplicates count, at distance 0). Boundary points are inside (`<=`).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact); radii come back in
  the caller's units and the realism's 1e-5 guard is then relative to the
  rescaled max|x|. k >= N - 1 raises ValueError (pass a smaller k).

  Not a loss: precision and recall count k-NN ball memberships, which
  are piecewise constant in the features, so their gradient is zero
  almost everywhere.

  Args:
    real: (N, D) real features, N >= k + 2.
    generated: (M, D) generated features, M >= k + 2.
    k: neighbourhood size, or a sequence of sizes computed in one pass
      (the outputs then get a leading axis).
    real_radii: `manifold_radii(real, k=...)` of this real set (holding
      every k asked for), to skip the real radius pass; None computes it.
    block_size: rows per distance block (memory ~ block_size x max(N, M)
      floats).
    mesh: shard both sets by rows over this mesh's devices: the radius
      and membership passes run as rings (`ops.distances`), each device
      holding block_size x max(N, M) / D distances; same results.

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
  return _run(real, generated, k, None, real_radii, block_size, mesh,
              "improved_precision_recall")[0]


def prdc(real: jax.Array, generated: jax.Array, *, k: Ks = 5,
         real_radii: Optional[manifold.ManifoldRadii] = None,
         block_size: int = distances.DEFAULT_BLOCK_SIZE,
         mesh: Optional[Mesh] = None) -> PRDCResult:
  """Precision, recall, density and coverage with k-NN balls.

  With B_i = B(X_i, NND_k(X_i)) and strict membership (`<`):
    precision = (1/M) sum_j 1[Y_j in union_i B_i]
    recall    = (1/N) sum_i 1[X_i in union_j B(Y_j, NND_k(Y_j))]
    density   = (1/(k M)) sum_j sum_i 1[Y_j in B_i]
    coverage  = (1/N) sum_i 1[min_j |X_i - Y_j| < NND_k(X_i)]

  When P = Q, E[density] = 1 and E[coverage] = 1 - prod_{i<k} (N-1-i) /
  (N-1+M-i) (0.969 for k = 5, N = M = 10000).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact); radii come back in the caller's units.
  k >= N - 1 raises ValueError (pass a smaller k).

  Not a loss: all four count k-NN ball memberships, which are piecewise
  constant in the features, so their gradient is zero almost everywhere.

  Args:
    real: (N, D) real features, N >= k + 2.
    generated: (M, D) generated features, M >= k + 2.
    k: neighbourhood size, or a sequence of sizes computed in one pass
      (the outputs then get a leading axis).
    real_radii: `manifold_radii(real, k=...)` of this real set (holding
      every k asked for), to skip the real radius pass; None computes it.
    block_size: rows per distance block (memory ~ block_size x max(N, M)
      floats).
    mesh: shard both sets by rows over this mesh's devices: the radius
      and membership passes run as rings (`ops.distances`), each device
      holding block_size x max(N, M) / D distances; same results.

  Returns:
    PRDCResult.

  References:
    Naeem, Oh, Uh, Choi, Yoo. Reliable Fidelity and Diversity Metrics for
    Generative Models. ICML 2020. Matches `prdc.compute_prdc(real, fake,
    nearest_k)` (strict `<`, radius = (k+1)-th smallest distance including
    self) up to float32 near-ties; k = 5 as in the paper.
  """
  return _run(real, generated, None, k, real_radii, block_size, mesh,
              "prdc")[1]


def _static_k(k, ks):
  return ks[0] if _single(k) else ks


def improved_pr_and_prdc(
    real: jax.Array, generated: jax.Array, *, ipr_k: Ks = 3, prdc_k: Ks = 5,
    real_radii: Optional[manifold.ManifoldRadii] = None,
    block_size: int = distances.DEFAULT_BLOCK_SIZE,
    mesh: Optional[Mesh] = None) -> Tuple[ImprovedPRResult, PRDCResult]:
  """Improved P/R (k = ipr_k, `<=`) and prdc (k = prdc_k, `<`) in one pass.

  The same numbers as `improved_precision_recall(real, generated,
  k=ipr_k)` and `prdc(real, generated, k=prdc_k)` (formulas there) at
  about half their distance FLOPs: the radii of each set come from one
  top-k pass for all k of both, and each real x generated distance block
  is computed once and compared both ways (`<=` against the ipr_k radii,
  `<` against the prdc_k radii). With `real_radii` the real radius pass is
  skipped too (3/8 of the two calls' FLOPs when N = M).

  Args:
    real: (N, D) real features, N >= max(k) + 2.
    generated: (M, D) generated features, M >= max(k) + 2.
    ipr_k: improved P/R's neighbourhood size(s) (Kynkaanniemi et al.: 3).
    prdc_k: prdc's neighbourhood size(s) (Naeem et al.: 5).
    real_radii: `manifold_radii(real, k=...)` of this real set, holding
      every k of ipr_k and prdc_k (e.g. k=(3, 5)); None computes them.
    block_size: rows per distance block (memory ~ block_size x max(N, M)
      floats).
    mesh: shard both sets by rows over this mesh's devices (rings, as in
      `prdc`).

  Returns:
    (ImprovedPRResult, PRDCResult), as the two functions return them.

  References:
    Kynkaanniemi et al., NeurIPS 2019; Naeem et al., ICML 2020 (see
    `improved_precision_recall` and `prdc`).
  """
  return _run(real, generated, ipr_k, prdc_k, real_radii, block_size, mesh,
              "improved_pr_and_prdc")
