"""FLD's mixture of isotropic Gaussians: standardisation and blocked NLLs.

p(x) = (1/N) sum_j N(x; g_j, v_j I_d), l_j = log v_j, with
log N(x; g, v I) = -|x - g|^2 / (2 v) - (d/2) log v - (d/2) log 2 pi; every
set is first standardised by the test set's per-dimension mean and unbiased
std (dimensions without variance dropped). The procedure is described in
`gendiag.metrics.fld`.
"""

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec
import numpy as np

from gendiag import _checks
from gendiag.ops import distances
from gendiag.ops import sharding

LOG_2PI = math.log(2.0 * math.pi)


def standardizer(test):
  """Test mean, unbiased std and the mask of dimensions with variance."""
  mean = jnp.mean(test, axis=0)
  std = jnp.std(test, axis=0, ddof=1)
  keep = std > 1e-6 * jnp.maximum(jnp.abs(mean), 1e-30)
  safe = jnp.where(keep, std, 1.0)
  return mean, safe, keep


def standardize(x, mean, std, keep):
  """(x - mean) / std on the kept dimensions, 0 on the others."""
  return jnp.where(keep, (x - mean) / std, 0.0)


# --------------------------------------------------------------------------
# Blocked distances and mixture log-likelihoods.


def row_exact_sq_distances(xb, centres):
  """|x_i - g_j|^2 of a row block, exact at each row's nearest centre.

  The matmul formula loses ~eps |x|^2 to cancellation, so a point equal to a
  centre comes out at ~1e-4 instead of 0; each row's minimum is recomputed
  as a sum of squared differences.
  """
  d2 = distances.sq_distances(xb, centres)
  cols = jnp.argmin(d2, axis=1)
  exact = jnp.sum(jnp.square(xb - centres[cols]), axis=1)
  return jnp.where(jnp.arange(centres.shape[0])[None, :] == cols[:, None],
                   exact[:, None], d2)


def weights(log_var, dim):
  """(w, c) with log N(x; g_j, v_j I) - log N = c_j - w_j |x - g_j|^2."""
  n_comp = log_var.shape[0]
  return (0.5 * jnp.exp(-log_var),
          -0.5 * dim * (log_var + LOG_2PI) - math.log(n_comp))


def mixture_lls(d2, log_var, dim):
  """log p(x_i) = logsumexp_j log N(x_i; g_j, v_j I) - log N (no origin)."""
  w, c = weights(log_var, dim)
  return jax.nn.logsumexp(c - d2 * w, axis=1)


def nll_per_dim(x, centres, log_var, dim, block_size, mesh=None):
  """(n,) -log p(x_i) / d, blocked over the rows of x.

  With `mesh`, the rows of x are sharded over its devices and the (at most
  `max_generated`, small) centres replicated: each device scores its rows
  against every centre, so each row's log-sum-exp and its exact nearest
  distance are the single-device ones.
  """
  if mesh is not None:
    spec = PartitionSpec(tuple(mesh.axis_names))
    out = jax.shard_map(
        lambda xl, g, lv, d: nll_per_dim(xl, g, lv, d, block_size),
        mesh=mesh, in_specs=(spec, PartitionSpec(), PartitionSpec(),
                             PartitionSpec()), out_specs=spec)(
                                 sharding.shard_rows(x, mesh), centres,
                                 log_var, dim)
    return sharding.unshard_rows(out, x.shape[0], mesh)
  fn = lambda xb, _: -mixture_lls(row_exact_sq_distances(xb, centres),
                                  log_var, dim) / dim
  return distances.map_row_blocks(fn, x, block_size=block_size)


@functools.partial(jax.jit, static_argnames=("block_size", "mesh"))
def nll_jit(x, centres, log_var, dim, block_size, mesh=None):
  """`nll_per_dim`, jitted (the pieces of `fld` share its compilations)."""
  return nll_per_dim(x, centres, log_var, dim, block_size, mesh)


def mixture_nll(x: jax.Array, centres: jax.Array, log_variances: jax.Array, *,
                block_size: int = distances.DEFAULT_BLOCK_SIZE,
                mesh: Optional[Mesh] = None) -> jax.Array:
  """Per-sample NLL per dimension under an equal-weight isotropic mixture.

  -log p(x_i) / d with p(x) = (1/N) sum_j N(x; g_j, exp(l_j) I_d). Blocked
  over rows of x; differentiable in all arguments (no standardisation here).

  Args:
    x: (n, d) points.
    centres: (N, d) component means g_j.
    log_variances: (N,) log-variances l_j.
    block_size: rows of x per block.
    mesh: shard the rows of x over this mesh's devices (centres
      replicated); same values.

  Returns:
    (n,) NLL per dimension in nats.
  """
  _checks.check_pair(centres, x, names=("centres", "x"))
  if np.shape(log_variances) != (np.shape(centres)[0],):
    raise ValueError(f"`log_variances` must have shape ({np.shape(centres)[0]},)"
                     f" to match `centres`; got {np.shape(log_variances)}.")
  return nll_jit(x, centres, log_variances, jnp.float32(np.shape(x)[1]),
                 block_size, mesh)
