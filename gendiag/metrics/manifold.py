"""The k-NN ball manifolds of two sets and the one pass that compares them.

Each set is the union of balls B(x, NND_k(x)), NND_k(x) the distance to x's
k-th nearest other point of the same set (`gendiag.ops.knn.knn_radii`, all
requested k at once). `manifold_pass` then walks the generated rows in
blocks, computes their distances to every real row and reduces them at once:
per generated row (membership, ball counts, realism) and, carried across
blocks, per real row (nearest generated distance, membership in the
generated balls); with a mesh it is a `sharding.ring_pair_reduce`. The
metrics built on it are in `gendiag.metrics.precision_recall`.
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp

from gendiag.ops import distances
from gendiag.ops import knn
from gendiag.ops import sharding

# Kynkaanniemi et al.'s realism score divides by the distance plus this.
REALISM_EPS = 1e-5


def _median(x):
  """Column medians of (n, K), as np.percentile(x, 50, axis=0) computes them.

  A sort and two gathers: `jnp.percentile` costs ten times more to compile.
  """
  n = x.shape[0]
  s = jnp.sort(x, axis=0)
  return 0.5 * (s[(n - 1) // 2] + s[n // 2])


def _membership(gen, gen_radii, gen_valid, gen_acc, real, real_radii, pruned,
                real_valid, real_acc, *, ks, strict, realism, block_size):
  """The membership pass of some generated rows against some real rows.

  Walks `gen` in row blocks; each block's distances to every row of `real`
  are reduced at once, per generated row into `gen_acc` = (ball counts
  (M, K) int32, realism (M, K) running max or None) and, carried across
  blocks, per real row into `real_acc` = (nearest generated distance (N,)
  running min, membership in the generated balls (N, K) bool). Invalid rows
  (`gen_valid`/`real_valid` False, or None for all valid) get distance inf,
  so they count nowhere. The single-device pass calls this once on the
  whole sets; the sharded pass once per ring step on a pair of shards.

  Returns:
    (gen_acc, real_acc), updated.
  """
  m, num_k = gen.shape[0], len(ks)
  inside = jnp.less if strict else jnp.less_equal
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
      counts.append(jnp.sum(inside(dist, real_radii[None, :, i]), axis=1,
                            dtype=jnp.int32))
      if realism:
        scores.append(jnp.max(pruned[None, :, i] / (dist + REALISM_EPS),
                              axis=1))
      recall_hits.append(jnp.any(inside(dist, gr[:, i, None]), axis=0))
    carry = (jnp.minimum(nearest, jnp.min(dist, axis=0)),
             covered_by_gen | jnp.stack(recall_hits, axis=1))
    out = (cnt + jnp.stack(counts, 1),
           jnp.maximum(sc, jnp.stack(scores, 1)) if realism else None)
    return carry, out

  blocks = (split(gen), split(gen_radii), valid.reshape(num_blocks, b),
            split(counts_acc), None if scores_acc is None else split(scores_acc))
  real_acc, (counts, scores) = lax.scan(step, real_acc, blocks)

  def rows(a):
    return a.reshape((num_blocks * b,) + a.shape[2:])[:m]

  return (rows(counts), None if scores is None else rows(scores)), real_acc


@functools.partial(jax.jit, static_argnames=(
    "ks", "strict", "realism", "block_size", "mesh"))
def manifold_pass(real, generated, *, ks, strict, realism, block_size,
                  mesh=None):
  """The three passes. Leading axis K = len(ks) on every k-dependent output."""
  n, m = real.shape[0], generated.shape[0]
  num_k = len(ks)

  # One top-k pass per row block over all columns (col_block_size=n or m;
  # with a mesh, over the whole reference shard of each ring step).
  radii = lambda x: knn.knn_radii(x, ks, block_size=block_size,  # noqa: E731
                                        col_block_size=x.shape[0], mesh=mesh)
  if n == m and mesh is None:  # One compiled radius pass, on both sets.
    real_radii, gen_radii = lax.map(radii, jnp.stack([real, generated]))
  else:
    real_radii, gen_radii = radii(real), radii(generated)
  inside = jnp.less if strict else jnp.less_equal
  # Realism (Kynkaanniemi et al.): balls with radius above the median are
  # dropped (radius 0), so outliers of the real set do not vouch for samples.
  pruned = jnp.where(real_radii > _median(real_radii), 0.0, real_radii)

  gen_acc = (jnp.zeros((m, num_k), jnp.int32),
             jnp.full((m, num_k), -jnp.inf, real.dtype) if realism else None)
  real_acc = (jnp.full((n,), jnp.inf, real.dtype),
              jnp.zeros((n, num_k), bool))
  membership = functools.partial(_membership, ks=ks, strict=strict,
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
  return dict(real_radii=real_radii.T, generated_radii=gen_radii.T,
              generated_in_real=counts > 0, counts=counts,
              realism=None if scores is None else scores.T,
              real_in_generated=real_in_gen.T,
              covered=inside(nearest_gen[None, :], real_radii.T),
              nearest_generated=nearest_gen)
