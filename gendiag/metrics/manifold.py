"""The k-NN ball manifolds of two sets and the one pass that compares them.

Each set is the union of balls B(x, NND_k(x)), NND_k(x) the distance to x's
k-th nearest other point of the same set (`gendiag.ops.knn.knn_radii`, all
requested k at once). `manifold_pass` then walks the generated rows in
blocks, computes their distances to every real row and reduces them at once:
per generated row (membership, ball counts, realism) and, carried across
blocks, per real row (nearest generated distance, membership in the
generated balls); with a mesh it is a `sharding.ring_pair_reduce`. The
metrics built on it are in `gendiag.metrics.precision_recall`.

`manifold_radii` is the public radius pass: the real set's radii, computed
once, can be passed as `real_radii=` to every metric of that module, so
scoring several models (and a held-out reference) against one real set
pays for its radii once.
"""

import functools
import math
from typing import Optional, Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.ops import distances
from gendiag.ops import knn
from gendiag.ops import sharding

# Kynkaanniemi et al.'s realism score divides by the distance plus this.
REALISM_EPS = 1e-5
# Rows of `real` whose radii `check_radii` recomputes.
_SPOT_ROWS = 4

Ks = Union[int, Sequence[int]]


def normalise_ks(k: Ks) -> Tuple[int, ...]:
  """`k` (an int or a non-empty sequence of them) as a tuple of ints."""
  ks = (k,) if isinstance(k, int) or not hasattr(k, "__len__") else tuple(k)
  if not ks:
    raise ValueError("`k` must be a positive integer or a non-empty sequence "
                     "of them.")
  for value in ks:
    _checks.check_positive_int(value, "k")
  return tuple(int(v) for v in ks)


def check_rows(name, x, ks):
  """ValueError unless `x` has the k + 2 rows the k-NN radii need."""
  need = max(ks) + 2
  if np.ndim(x) == 2 and np.shape(x)[0] < need:
    raise ValueError(
        f"`{name}` has {np.shape(x)[0]} samples but k={max(ks)} needs at "
        f"least {need} (k + 2); pass a smaller k or more samples.")


def _median(x):
  """Column medians of (n, K), as np.percentile(x, 50, axis=0) computes them.

  A sort and two gathers: `jnp.percentile` costs ten times more to compile.
  """
  n = x.shape[0]
  s = jnp.sort(x, axis=0)
  return 0.5 * (s[(n - 1) // 2] + s[n // 2])


def _membership(gen, gen_radii, gen_valid, gen_acc, real, real_radii, pruned,
                real_valid, real_acc, *, strict, realism, block_size):
  """The membership pass of some generated rows against some real rows.

  Walks `gen` in row blocks; each block's distances to every row of `real`
  are reduced at once, per generated row into `gen_acc` = (ball counts
  (M, K) int32, realism (M, K) running max or None) and, carried across
  blocks, per real row into `real_acc` = (nearest generated distance (N,)
  running min, membership in the generated balls (N, K) bool). Invalid rows
  (`gen_valid`/`real_valid` False, or None for all valid) get distance inf,
  so they count nowhere. `strict` and `realism` hold one bool per k
  (column): `<` or `<=`, and whether that column's realism is computed
  (columns without it stay -inf). The single-device pass calls this once
  on the whole sets; the sharded pass once per ring step on a pair of
  shards.

  Returns:
    (gen_acc, real_acc), updated.
  """
  m, num_k = gen.shape[0], len(strict)
  inside = [jnp.less if st else jnp.less_equal for st in strict]
  realism = tuple(realism)
  b = distances.balanced_block(m, block_size)
  num_blocks = math.ceil(m / b)
  pad = num_blocks * b - m

  def split(a):
    return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)).reshape(
        (num_blocks, b) + a.shape[1:])

  valid = jnp.arange(num_blocks * b) < m
  if gen_valid is not None:
    valid = valid & jnp.pad(gen_valid, (0, pad))
  mask_rows = pad or gen_valid is not None
  counts_acc, scores_acc = gen_acc
  any_realism = any(realism)

  def step(carry, blk):
    nearest, covered_by_gen = carry
    gb, gr, ok, cnt, sc = blk
    dist = jnp.sqrt(distances.sq_distances(gb, real))  # (b, n)
    if mask_rows:
      dist = jnp.where(ok[:, None], dist, jnp.inf)
    if real_valid is not None:
      dist = jnp.where(real_valid[None, :], dist, jnp.inf)
    counts, scores, recall_hits = [], [], []
    for i in range(num_k):
      counts.append(jnp.sum(inside[i](dist, real_radii[None, :, i]), axis=1,
                            dtype=jnp.int32))
      if realism[i]:
        scores.append(jnp.max(pruned[None, :, i] / (dist + REALISM_EPS),
                              axis=1))
      elif any_realism:
        scores.append(jnp.full((dist.shape[0],), -jnp.inf, dist.dtype))
      recall_hits.append(jnp.any(inside[i](dist, gr[:, i, None]), axis=0))
    carry = (jnp.minimum(nearest, jnp.min(dist, axis=0)),
             covered_by_gen | jnp.stack(recall_hits, axis=1))
    out = (cnt + jnp.stack(counts, 1),
           jnp.maximum(sc, jnp.stack(scores, 1)) if any_realism else None)
    return carry, out

  blocks = (split(gen), split(gen_radii), valid.reshape(num_blocks, b),
            split(counts_acc), None if scores_acc is None else split(scores_acc))
  real_acc, (counts, scores) = lax.scan(step, real_acc, blocks)

  def rows(a):
    return a.reshape((num_blocks * b,) + a.shape[2:])[:m]

  return (rows(counts), None if scores is None else rows(scores)), real_acc


def _per_k(flag, num_k):
  """One bool per k from a bool or a sequence of them."""
  flags = (bool(flag),) * num_k if isinstance(flag, bool) else tuple(
      bool(f) for f in flag)
  if len(flags) != num_k:
    raise ValueError(f"need one flag per k ({num_k}); got {flags}.")
  return flags


def _radii(x, ks, block_size, mesh):
  """(n, K) k-NN radii: one top-k pass per row block over all columns
  (col_block_size=n; with a mesh, the whole reference shard per ring step).
  """
  return knn.knn_radii(x, ks, block_size=block_size,
                       col_block_size=x.shape[0], mesh=mesh)


@functools.partial(jax.jit, static_argnames=("ks", "block_size", "mesh"))
def radii_pass(x, *, ks, block_size, mesh=None):
  """(n, K) radii of one set, as `manifold_pass` computes them."""
  return _radii(x, ks, block_size, mesh)


@functools.partial(jax.jit, static_argnames=(
    "ks", "strict", "realism", "block_size", "mesh"))
def manifold_pass(real, generated, *, ks, strict, realism, block_size,
                  mesh=None, real_radii=None):
  """The three passes. Leading axis K = len(ks) on every k-dependent output.

  `strict` (`<` rather than `<=`) and `realism` are a bool or one bool per
  k, so one pass can serve both conventions (k=3 `<=` and k=5 `<`).
  `real_radii` (N, K), when given, replaces the real radius pass (the
  radii of `real` for `ks`, e.g. from `radii_pass`, shared by many calls).
  """
  n, m = real.shape[0], generated.shape[0]
  num_k = len(ks)
  strict, realism = _per_k(strict, num_k), _per_k(realism, num_k)

  if real_radii is not None:
    gen_radii = _radii(generated, ks, block_size, mesh)
  elif n == m and mesh is None:  # One compiled radius pass, on both sets.
    real_radii, gen_radii = lax.map(
        lambda x: _radii(x, ks, block_size, None), jnp.stack([real, generated]))
  else:
    real_radii = _radii(real, ks, block_size, mesh)
    gen_radii = _radii(generated, ks, block_size, mesh)
  # Realism (Kynkaanniemi et al.): balls with radius above the median are
  # dropped (radius 0), so outliers of the real set do not vouch for samples.
  pruned = jnp.where(real_radii > _median(real_radii), 0.0, real_radii)

  gen_acc = (jnp.zeros((m, num_k), jnp.int32),
             jnp.full((m, num_k), -jnp.inf, real.dtype) if any(realism)
             else None)
  real_acc = (jnp.full((n,), jnp.inf, real.dtype),
              jnp.zeros((n, num_k), bool))
  membership = functools.partial(_membership, strict=strict,
                                 realism=realism, block_size=block_size)
  if mesh is None:
    gen_acc, real_acc = membership(generated, gen_radii, None, gen_acc, real,
                                   real_radii, pruned, None, real_acc)
  else:
    # Generated rows stay on their device; the real shards travel the ring
    # with their per-row accumulators (distance blocks: block_size x n/D).
    def local(ga, gv, gc, ra, rv, rc):
      return membership(ga[0], ga[1], gv, gc, ra[0], ra[1], ra[2], rv, rc)

    gen_acc, real_acc = sharding.ring_pair_reduce(
        local, (generated, gen_radii), gen_acc, (real, real_radii, pruned),
        real_acc, mesh=mesh)
  (counts, scores), (nearest_gen, real_in_gen) = gen_acc, real_acc
  counts = counts.T
  covered = jnp.stack([
      (jnp.less if st else jnp.less_equal)(nearest_gen, real_radii[:, i])
      for i, st in enumerate(strict)])
  return dict(real_radii=real_radii.T, generated_radii=gen_radii.T,
              generated_in_real=counts > 0, counts=counts,
              realism=None if scores is None else scores.T,
              real_in_generated=real_in_gen.T, covered=covered,
              nearest_generated=nearest_gen)


@_results.result(static=("k",))
class ManifoldRadii:
  """The k-NN radii of one set, for one or several k.

  Attributes:
    radii: (N, K) NND_k of each row: the Euclidean distance to its k-th
      nearest other row of the set (duplicates count, at distance 0),
      column j for k[j].
    k: the K neighbourhood sizes, a tuple of ints.
  """
  radii: jax.Array
  k: Tuple[int, ...] = (3, 5)


def manifold_radii(x: jax.Array, *, k: Ks = (3, 5),
                   block_size: int = distances.DEFAULT_BLOCK_SIZE,
                   mesh: Optional[Mesh] = None) -> ManifoldRadii:
  """The k-NN ball radii of a set, NND_k(x_i), for every requested k at once.

  NND_k(x_i) = the k-th smallest of |x_i - x_j| over j != i: the radius of
  x_i's ball in the manifold B = union_i B(x_i, NND_k(x_i)) of improved
  precision/recall and prdc. One blocked distance pass serves every k (a
  running top-max(k)). Compute it once for a real set and pass it as
  `real_radii=` to `improved_precision_recall`, `prdc` or
  `improved_pr_and_prdc` for each model scored against that set: they then
  skip their own real radius pass (same results).

  Args:
    x: (N, D) features, N >= max(k) + 2.
    k: a neighbourhood size or a sequence of them (both k of
      `improved_pr_and_prdc`: (3, 5) by default).
    block_size: rows per distance block (memory ~ block_size x N floats).
    mesh: shard x by rows over this mesh's devices (a ring pass).

  Returns:
    ManifoldRadii with (N, len(k)) radii, in the units of `x`.

  References:
    Kynkaanniemi et al., NeurIPS 2019 (radius = k-th neighbour excluding
    self); Naeem et al., ICML 2020 (prdc's "(k+1)-th smallest including
    self", the same radius).
  """
  ks = normalise_ks(k)
  _checks.check_mesh("manifold_radii", mesh, x=x)
  check_rows("x", x, ks)
  x = _checks.check_features(x, "x", min_rows=max(ks) + 2)
  (x,), s = _checks.rescale(x)
  radii = radii_pass(jnp.asarray(x), ks=ks, block_size=block_size, mesh=mesh)
  return ManifoldRadii(_checks.scale_pow2(radii, -s), k=ks)


@functools.partial(jax.jit, static_argnames=("ks",))
def _spot_radii(x, ks):
  """(r, K) radii of the first r rows of x, from one small product."""
  head = x[:_SPOT_ROWS]
  sq = distances.sq_distances(head, x)
  sq = jnp.where(jnp.arange(x.shape[0])[None, :]
                 == jnp.arange(head.shape[0])[:, None], jnp.inf, sq)
  best = -lax.top_k(-sq, max(ks))[0]
  return jnp.sqrt(best[:, [k - 1 for k in ks]])


def check_radii(real_radii, real, ks, s):
  """The (N, len(ks)) columns of `real_radii` for `ks`, scaled by 2^s.

  Raises ValueError unless `real_radii` is a `ManifoldRadii` holding every
  k of `ks` for N rows; for concrete inputs on this process, the radii of
  the first rows of `real` are recomputed and must agree (radii of another
  set, or of a rescaled one, are caught).
  """
  if not isinstance(real_radii, ManifoldRadii):
    raise ValueError(
        "`real_radii` must be the ManifoldRadii that manifold_radii(real, "
        f"k=...) returns; got {type(real_radii).__name__}.")
  missing = [k for k in ks if k not in real_radii.k]
  if missing:
    raise ValueError(
        f"`real_radii` holds the radii for k={real_radii.k} but k={missing} "
        f"is needed; pass manifold_radii(real, k={ks}).")
  n = np.shape(real)[0]
  if np.shape(real_radii.radii) != (n, len(real_radii.k)):
    raise ValueError(
        f"`real_radii` has radii of shape {np.shape(real_radii.radii)} but "
        f"`real` has {n} rows and k={real_radii.k} needs ({n}, "
        f"{len(real_radii.k)}); pass manifold_radii(real, ...) of this set.")
  cols = [real_radii.k.index(k) for k in ks]
  radii = _checks.scale_pow2(jnp.asarray(real_radii.radii)[:, cols], s)
  if (all(_checks.is_concrete(a) for a in (real, radii))
      and getattr(real, "is_fully_addressable", True)):
    want = np.asarray(_spot_radii(jnp.asarray(real), ks), np.float64)
    got = np.asarray(radii[:_SPOT_ROWS], np.float64)
    tol = 1e-3 * (np.max(want) + np.finfo(np.float32).tiny)
    if not np.allclose(got, want, rtol=1e-3, atol=tol):
      raise ValueError(
          f"`real_radii` are not the k-NN radii of `real` (first rows: "
          f"{got[:, 0].tolist()} given, {want[:, 0].tolist()} recomputed); "
          "pass manifold_radii(real, ...) of this very set.")
  return radii
