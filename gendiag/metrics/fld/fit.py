"""FLD's bandwidth fit: per-centre log-variances by Adam on the fit set.

Minimises, over l = (l_1..l_N) and an auxiliary origin component's l_0, the
batch objective L = -(1/(d B)) sum_i log[(1/N) sum_j N(x_i; g_j, e^{l_j} I)
+ N(0.9 (x_i - mean(x)); 0, e^{l_0} I)] with the closed-form gradient of
`fit_block`; the conventions (those of marcojira/fld) are listed in
`gendiag.metrics.fld`. The fit set's distances to the centres are cached
when they fit `max_cache_bytes` and recomputed in row blocks otherwise.
"""

import functools
import math
from typing import NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from gendiag import _checks
from gendiag import _results
from gendiag.metrics.fld import mixture
from gendiag.ops import distances

INIT_EPS = 1e-3          # added to the nearest squared distance at init
ORIGIN_SCALE = 0.81      # (1 - 0.1)^2, the origin component's shrinkage
DEFAULT_MAX_CACHE_BYTES = 1 << 30
# Rows per step of the fit's epochs: the objective makes ~6 passes over each
# (rows x N) slab of distances (max, exp, sums, two vector-matrix products);
# 16 x 10k floats (640 KB) stay in L2, a 1024-row block does not (2.7x
# slower epochs at N = 10k on 2 cores). Distances are still computed in `block_size` rows.
EPOCH_ROWS = 16
INITS = ("nearest", "unit")


@_results.result
class MixtureFit:
  """Fitted log-variances of a mixture of isotropic Gaussians.

  Attributes:
    log_variances: (N,) fitted l_j = log v_j, in [-40, 40].
    origin_log_variance: the auxiliary origin component's log-variance.
    losses: (max_epochs,) epoch-mean objective (NLL per dimension of the fit
      set, origin included); entries after `num_iterations` repeat the last
      one.
    num_iterations: epochs run.
    converged: whether the early-stopping rule fired before max_epochs.
    nearest_sq_distance: (N,) min_i |x_i - g_j|^2 over the fit set.
    nearest_index: (N,) int32 index of that fit-set row.
  """
  log_variances: jax.Array
  origin_log_variance: jax.Array
  losses: jax.Array
  num_iterations: jax.Array
  converged: jax.Array
  nearest_sq_distance: jax.Array
  nearest_index: jax.Array


def fit_block(d2, origin_d2, valid, w, c, w0, c0, dim):
  """Sums over one row block of the fit objective and its gradient.

  The objective of a batch is L = -(1/(d B)) sum_i log q(x_i) with
  q(x) = (1/N) sum_j N(x; g_j, v_j) + N0(x). With a_ij = c_j - w_j d2_ij,
  e_ij = exp(a_ij - m_i) (m_i the row max) and s_i = sum_j e_ij + e_i0, the
  responsibilities are e_ij / s_i and dL/dl_j = -(1/(d B)) sum_i (e_ij / s_i)
  (w_j d2_ij - d/2): two vector-matrix products with the one exp per entry.

  Returns:
    The block's sum of log q, the (N,) sums sum_i r_ij (w_j d2_ij - d/2), the
    same for the origin component, and the row count.
  """
  a = c - d2 * w
  a0 = c0 - origin_d2 * w0
  # m only shifts the exponents (ll does not depend on it): no gradient
  # through the max, whose rule needs a recomputed `a` to equal it bitwise.
  m = lax.stop_gradient(jnp.maximum(jnp.max(a, axis=1), a0))
  e = jnp.exp(a - m[:, None])
  e0 = jnp.exp(a0 - m)
  s = jnp.sum(e, axis=1) + e0
  inv = jnp.where(valid, 1.0 / s, 0.0)
  u = jnp.matmul(inv, e, precision=distances.HIGHEST)
  v = jnp.matmul(inv, e * d2, precision=distances.HIGHEST)
  g = w * v - 0.5 * dim * u
  g0 = jnp.sum(inv * e0 * (w0 * origin_d2 - 0.5 * dim))
  ll = jnp.sum(jnp.where(valid, m + jnp.log(s), 0.0))
  return ll, g, g0, jnp.sum(valid.astype(d2.dtype))


def batch_layout(n, batch_size, block_size):
  """Static layout of the shuffled fit set into batches of row blocks.

  Row r of batch i is shuffled row i * B + r (the reference's
  `x.split(batch_size)`); each batch is padded to whole blocks, and each
  block to whole sub-blocks of EPOCH_ROWS rows.

  Returns:
    positions (num_batches, blocks, b) int array (clipped to [0, n)) and the
    matching validity mask.
  """
  batch = min(batch_size, n)
  num_batches = math.ceil(n / batch)
  b = min(block_size, batch)
  b = EPOCH_ROWS * math.ceil(b / EPOCH_ROWS)   # whole epoch sub-blocks
  blocks = math.ceil(batch / b)
  r = np.arange(blocks * b)
  pos = np.arange(num_batches)[:, None] * batch + r[None, :]
  valid = (r[None, :] < batch) & (pos < n)
  pos = np.where(valid, pos, 0)
  return (pos.reshape(num_batches, blocks, b),
          valid.reshape(num_batches, blocks, b))


def _scan(f, init, xs):
  """`lax.scan`, unrolled when there is one step (less to compile)."""
  if xs.shape[0] == 1:
    carry, y = f(init, xs[0])
    return carry, jax.tree.map(lambda a: a[None], y)
  return lax.scan(f, init, xs)


class _Layout(NamedTuple):
  """The shuffled fit set in (num_blocks, b) slots (`batch_layout`)."""
  rows: jax.Array       # row of x in each slot
  valid: jax.Array      # bool: the slot holds a row
  slots: jax.Array      # int32 slot numbers
  origin_d2: jax.Array  # |x - mean(x)|^2 of each slot's row
  num_batches: int
  blocks: int           # blocks per batch
  b: int                # rows per block, a multiple of EPOCH_ROWS


def _layout(x, key, batch_size, block_size) -> _Layout:
  n = x.shape[0]
  pos, valid = batch_layout(n, batch_size, block_size)
  num_batches, blocks, b = pos.shape
  num_blocks = num_batches * blocks
  if num_batches > 1:
    rows = jax.random.permutation(key, n)[pos].reshape(num_blocks, b)
  else:   # one full batch per step: the row order cannot matter
    rows = jnp.asarray(pos.reshape(num_blocks, b))
  valid = jnp.asarray(valid.reshape(num_blocks, b))
  mean_x = jnp.mean(x, axis=0)
  origin_d2 = jnp.sum(jnp.square(x - mean_x), axis=1)[rows]
  slots = jnp.arange(num_blocks * b, dtype=jnp.int32).reshape(num_blocks, b)
  return _Layout(rows=rows, valid=valid, slots=slots, origin_d2=origin_d2,
                 num_batches=num_batches, blocks=blocks, b=b)


class _Distances(NamedTuple):
  """Each centre's nearest fit-set row, and the cached distances (or None)."""
  nearest_index: jax.Array  # (N,) row of x
  nearest: jax.Array        # (N,) its exact squared distance
  best_slot: jax.Array      # (N,) its slot in the layout
  cached: Optional[jax.Array]       # (num_blocks, b, N), exact at nearest
  cached_subs: Optional[jax.Array]  # the same in EPOCH_ROWS-row sub-blocks


def _raw_block(x, centres, layout, k):
  d2 = distances.sq_distances(x[layout.rows[k]], centres)
  return jnp.where(layout.valid[k][:, None], d2, 0.0)


def _first_step(x, centres, layout, cache, carry, k):
  """Scan step of the first pass: running nearest slot of each centre."""
  best, best_slot = carry
  n_comp = centres.shape[0]
  d2 = _raw_block(x, centres, layout, k)
  i = jnp.argmin(jnp.where(layout.valid[k][:, None], d2, jnp.inf), axis=0)
  dmin = jnp.where(layout.valid[k][i], d2[i, jnp.arange(n_comp)], jnp.inf)
  better = dmin < best
  carry = (jnp.where(better, dmin, best),
           jnp.where(better, layout.slots[k][i], best_slot))
  return carry, (d2 if cache else None)


def _nearest_rows(x, centres, layout, cache) -> _Distances:
  """First pass: each centre's nearest row of x (slot in the layout), and the
  cached distances when they fit the budget."""
  n_comp = centres.shape[0]
  num_blocks, b = layout.rows.shape
  init_carry = (jnp.full((n_comp,), jnp.inf, x.dtype),
                jnp.zeros((n_comp,), jnp.int32))
  (_, best_slot), cached = _scan(
      functools.partial(_first_step, x, centres, layout, cache), init_carry,
      jnp.arange(num_blocks))
  # The matmul formula leaves ~eps |x|^2 of cancellation error, so an exact
  # copy would sit at ~1e-4 instead of 0: recompute each centre's nearest
  # distance as a sum of squared differences.
  nearest_index = layout.rows.reshape(-1)[best_slot]
  nearest = jnp.sum(jnp.square(x[nearest_index] - centres), axis=1)
  cols = jnp.arange(n_comp)
  cached_subs = None
  if cache:
    cached = cached.reshape(num_blocks * b, n_comp).at[best_slot, cols].set(
        nearest).reshape(num_blocks, b, n_comp)
    subs = b // EPOCH_ROWS
    cached_subs = cached.reshape(num_blocks * subs, EPOCH_ROWS, n_comp)
  return _Distances(nearest_index=nearest_index, nearest=nearest,
                    best_slot=best_slot, cached=cached if cache else None,
                    cached_subs=cached_subs)


def _distance_block(x, centres, layout, dist, k):
  """(b, N) distances of block k, exact at each centre's nearest row."""
  if dist.cached is not None:
    return dist.cached[k]
  return jnp.where(layout.slots[k][:, None] == dist.best_slot[None, :],
                   dist.nearest[None, :], _raw_block(x, centres, layout, k))


def _block_sums(x, centres, layout, dist, terms, acc, k):
  """Adds block k's `fit_block` sums, in sub-blocks of EPOCH_ROWS rows."""
  w, c, w0, c0, dim = terms
  n_comp = centres.shape[0]
  subs = layout.b // EPOCH_ROWS
  if dist.cached is not None:
    sub_block = lambda j: dist.cached_subs[k * subs + j]  # noqa: E731
  else:
    d2 = _distance_block(x, centres, layout, dist, k).reshape(
        subs, EPOCH_ROWS, n_comp)
    sub_block = lambda j: d2[j]  # noqa: E731
  o2 = layout.origin_d2[k].reshape(subs, EPOCH_ROWS)
  ok = layout.valid[k].reshape(subs, EPOCH_ROWS)

  def sub_step(acc, j):
    out = fit_block(sub_block(j), o2[j], ok[j], w, c, w0, c0, dim)
    return jax.tree.map(jnp.add, acc, out), None

  return _scan(sub_step, acc, jnp.arange(subs))[0], None


def _batch_step(x, centres, layout, dist, dim, optimizer, state,
                batch_blocks):
  """One Adam step on one batch (its row blocks `batch_blocks`)."""
  params, opt_state = state
  n_comp = centres.shape[0]
  w, c = mixture.weights(params[0], dim)
  w0 = 0.5 * ORIGIN_SCALE * jnp.exp(-params[1])
  c0 = -0.5 * dim * (params[1] + mixture.LOG_2PI)
  block_step = functools.partial(_block_sums, x, centres, layout, dist,
                                 (w, c, w0, c0, dim))
  zero = (jnp.zeros((), x.dtype), jnp.zeros((n_comp,), x.dtype),
          jnp.zeros((), x.dtype), jnp.zeros((), x.dtype))
  (ll, g, g0, count), _ = _scan(block_step, zero, batch_blocks)
  scale = -1.0 / (dim * count)
  grads = (scale * g, scale * g0)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  new_lv, new_lv0 = optax.apply_updates(params, updates)
  params = (jnp.clip(new_lv, -40.0, 40.0), new_lv0)
  return (params, opt_state), scale * ll


def _epoch(batch_step, batch_blocks, max_epochs, tol, state):
  """One pass over the batches, then the early-stopping rule."""
  e, params, opt_state, losses, done = state
  (params, opt_state), batch_losses = _scan(
      batch_step, (params, opt_state), batch_blocks)
  mean_loss = jnp.mean(batch_losses)
  losses = losses.at[e].set(mean_loss)
  recent = losses[jnp.clip(e - jnp.arange(1, 5), 0, max_epochs - 1)]
  done = (e > 5) & (jnp.max(jnp.abs(mean_loss - recent)) < tol)
  return e + 1, params, opt_state, losses, done


def _keep_going(max_epochs, state):
  e, _, _, _, done = state
  return (e < max_epochs) & ~done


def _train_nll(x, centres, layout, dist, log_var, dim):
  """Mean and (n,) per-row NLL per dimension of x (no origin component).

  -log p(x_i) / d from the fit's distances (exact at each centre's nearest
  row); the mean is the sum of the block sums / (n d).
  """
  n = x.shape[0]
  valid = layout.valid

  def nll_block(k):
    ll = mixture.mixture_lls(_distance_block(x, centres, layout, dist, k),
                             log_var, dim)
    return jnp.sum(jnp.where(valid[k], ll, 0.0)), ll

  _, (totals, lls) = _scan(lambda c, k: (c, nll_block(k)), 0.0,
                           jnp.arange(layout.rows.shape[0]))
  rows = jnp.where(valid, layout.rows, n).reshape(-1)   # padding: dropped
  per_row = jnp.zeros((n,), x.dtype).at[rows].set(-lls.reshape(-1) / dim,
                                                  mode="drop")
  return -jnp.sum(totals) / (n * dim), per_row


def fit(x, centres, key, dim, *, init, lr, max_epochs, batch_size, tol,
        block_size, max_cache_bytes):
  """Fits the centres' log-variances to x (already standardised).

  Returns:
    (MixtureFit, mean NLL per dimension of x under the fitted mixture, its
    (n,) per-row terms).
  """
  n_comp = centres.shape[0]
  layout = _layout(x, key, batch_size, block_size)
  num_blocks = layout.rows.shape[0]
  cache = num_blocks * layout.b * n_comp * 4 <= max_cache_bytes
  dist = _nearest_rows(x, centres, layout, cache)
  if init == "nearest":
    log_var = jnp.log((dist.nearest + INIT_EPS) / dim)
  else:
    log_var = jnp.zeros((n_comp,), x.dtype)
  params = (log_var, jnp.zeros((), x.dtype))
  optimizer = optax.adam(lr)
  opt_state = optimizer.init(params)
  batch_step = functools.partial(_batch_step, x, centres, layout, dist, dim,
                                 optimizer)
  batch_blocks = jnp.arange(num_blocks).reshape(layout.num_batches,
                                                layout.blocks)
  state = (jnp.int32(0), params, opt_state,
           jnp.zeros((max_epochs,), x.dtype), jnp.bool_(False))
  epochs, params, _, losses, done = lax.while_loop(
      functools.partial(_keep_going, max_epochs),
      functools.partial(_epoch, batch_step, batch_blocks, max_epochs, tol),
      state)
  last = losses[jnp.maximum(epochs - 1, 0)]
  losses = jnp.where(jnp.arange(max_epochs) < epochs, losses, last)
  result = MixtureFit(log_variances=params[0], origin_log_variance=params[1],
                      losses=losses, num_iterations=epochs, converged=done,
                      nearest_sq_distance=dist.nearest,
                      nearest_index=dist.nearest_index.astype(jnp.int32))
  return (result, *_train_nll(x, centres, layout, dist, params[0], dim))


# The static options of `fit_jit`.
FIT_STATIC = ("init", "max_epochs", "batch_size", "block_size",
              "max_cache_bytes")


def check_fit_options(init, max_epochs, batch_size, block_size):
  """Raises ValueError on an unknown init or a non-positive size."""
  if init not in INITS:
    raise ValueError(f"`init` must be one of {INITS}; got {init!r}.")
  _checks.check_positive_int(max_epochs, "max_epochs")
  _checks.check_positive_int(batch_size, "batch_size")
  _checks.check_positive_int(block_size, "block_size")


@functools.partial(jax.jit, static_argnames=FIT_STATIC)
def fit_jit(x, centres, key, dim, **options):
  """`fit`, jitted: (MixtureFit, mean NLL per dimension of x, per row)."""
  return fit(x, centres, key, dim, **options)


def fit_bandwidths(x: jax.Array, centres: jax.Array, *, key: jax.Array,
                   init: str = "nearest", lr: float = 0.5,
                   max_epochs: int = 50, batch_size: int = 10_000,
                   tol: float = 5e-4,
                   block_size: int = distances.DEFAULT_BLOCK_SIZE,
                   max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES
                   ) -> MixtureFit:
  """Fits per-centre log-variances to maximise the likelihood of x.

  Minimises, over l = (l_1..l_N) and the origin component's l_0, the batch
  objective L = -(1/(d B)) sum_i log[(1/N) sum_j N(x_i; g_j, e^{l_j} I)
  + N(0.9 (x_i - mean(x)); 0, e^{l_0} I)] with Adam, one step per batch of
  `batch_size` rows of x in one shuffled order, clamping l_j to [-40, 40]
  after each step; stops after epoch 6 once the epoch-mean loss is within
  `tol` of each of the previous four. The gradient is the closed form
  dL/dl_j = -(1/(d B)) sum_i r_ij (|x_i - g_j|^2 / (2 v_j) - d/2).

  Inputs are used as given (`fld` standardises them first).

  Args:
    x: (n, d) fit set.
    centres: (N, d) component means.
    key: `jax.random` key for the row order.
    init: "nearest" (l_j = log((min_i |x_i - g_j|^2 + 1e-3) / d), the
      reference's HEAD) or "unit" (l_j = 0, its camera-ready version).
    lr: Adam learning rate.
    max_epochs: most passes over x.
    batch_size: rows per Adam step.
    tol: early-stopping tolerance on the epoch-mean loss (0 never stops).
    block_size: rows per distance block.
    max_cache_bytes: cache the n x N float32 distances if they fit, else
      recompute them in blocks every epoch.

  Returns:
    A `MixtureFit`.
  """
  _checks.check_pair(centres, x, names=("centres", "x"))
  check_fit_options(init, max_epochs, batch_size, block_size)
  return fit_jit(jnp.asarray(x, jnp.float32),
                 jnp.asarray(centres, jnp.float32), key,
                 jnp.float32(np.shape(x)[1]), init=init, lr=float(lr),
                 max_epochs=int(max_epochs), batch_size=int(batch_size),
                 tol=float(tol), block_size=int(block_size),
                 max_cache_bytes=int(max_cache_bytes))[0]
