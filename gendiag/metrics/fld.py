"""Feature Likelihood Divergence (FLD): a mixture fitted to train, scored on test.

A mixture of isotropic Gaussians sits on the N generated samples g_j, each
with its own log-variance l_j = log v_j:

  p(x) = (1/N) sum_j N(x; g_j, v_j I_d),
  log N(x; g, v I) = -|x - g|^2 / (2 v) - (d/2) log v - (d/2) log 2 pi.

The l_j are fitted by Adam on the training features (in batches of 10,000
rows in one shuffled order, clamped to [-40, 40] after each step), with an
auxiliary "origin" component N(0.9 (x - mean_train); 0, v_0 I) of weight 1 that
gives every training point a floor likelihood while fitting only. Then

  NLL(S) = -(1 / (d |S|)) sum_{x in S} log p(x)       (nats per dimension)
  FLD    = 100 (NLL(test) - C)
  gap    = 100 (NLL(train) - NLL(test))

where C is the same procedure with k = min(N, floor(n_train / 2)) training
points as centres, fitted on the remaining training points and scored on
test: the NLL of a "model" as good as a fresh real sample of size k. All
features are first standardised by the test set's per-dimension mean and
unbiased std. Lower FLD is better; about 0 means as good as real data of the
same size. A generated set that copies training points makes their
bandwidths collapse, so train becomes far likelier than test: the gap goes
strongly negative (and FLD rises once copies dominate).

The per-sample memorisation score of the reference package is
O_j = max_i log N(x_i; g_j, v_j I) / d over the training points x_i (higher =
more likely a copy), a ranking without a threshold; see
`gendiag.metrics.memorization.copy_flags` for flags.

Conventions (those of the reference package `marcojira/fld` at ffbbf20, which
the differential test follows): nearest-neighbour initialisation
l_j = log((min_i |x_i - g_j|^2 + 1e-3) / d), Adam(lr 0.5, b1 0.9, b2 0.999,
eps 1e-8), at most 50 epochs, early stop once the epoch-mean loss after
epoch 6 is within 5e-4 of each of the previous four, 10,000 generated
samples at most (drawn without replacement). Where we differ, on purpose:
  * test dimensions with zero variance are dropped (d counts the rest)
    instead of producing NaN;
  * the squared distance of each centre to its nearest training point (and
    of each scored point to its nearest centre) is recomputed as an exact
    difference, so exact copies have distance 0 (the matmul formula leaves
    ~1e-4 and stops their bandwidth early, making O_j ~6 instead of ~17);
  * the train x centres distances are cached only within `max_cache_bytes`
    and recomputed in row blocks otherwise (the reference crashes at
    250,000 training points);
  * the training NLL (gap) and the memorisation scores come out of the same
    fit, so the gap costs nothing extra.

Size effects are the method's, not bugs: with n_train < 2 N the baseline has
fewer centres than the model, and FLD of an ideal model is slightly negative
(about -2 at n_train = N); compare models at equal sizes.

References:
  Jiralerspong, Bose, Gemp, Qin, Bachrach & Gidel, "Feature Likelihood
  Divergence: Evaluating the Generalization of Generative Models Using
  Samples", NeurIPS 2023 (arXiv 2302.04440v4); reference package
  github.com/marcojira/fld (FLD, the "gap" mode, sample_memorization_scores).
"""

import functools
import math
from typing import Optional

from absl import logging
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec
import numpy as np
import optax

from gendiag import _checks
from gendiag import _results
from gendiag.ops import intervals
from gendiag.ops import distances
from gendiag.ops import sharding

LOG_2PI = math.log(2.0 * math.pi)
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
      set, origin included); entries after `epochs` repeat the last one.
    epochs: epochs run.
    converged: whether the early-stopping rule fired before max_epochs.
    nearest_sq_distance: (N,) min_i |x_i - g_j|^2 over the fit set.
    nearest_index: (N,) int32 index of that fit-set row.
  """
  log_variances: jax.Array
  origin_log_variance: jax.Array
  losses: jax.Array
  epochs: jax.Array
  converged: jax.Array
  nearest_sq_distance: jax.Array
  nearest_index: jax.Array


@_results.result
class FLDResult:
  """FLD, the generalisation gap and the per-sample memorisation scores.

  Attributes:
    fld: 100 (nll_test - baseline_nll); lower is better, ~0 = as good as a
      fresh real sample of the same size.
    gap: 100 (nll_train - nll_test); strongly negative = memorisation.
    fld_train: 100 (nll_train - baseline_nll) (the reference's "train" mode).
    nll_test: mean NLL per dimension of the test set (nats).
    nll_train: mean NLL per dimension of the training set.
    baseline_nll: C, the baseline's test NLL per dimension.
    test_nlls: (n_test,) NLL per dimension of each test sample.
    memorization_scores: (N,) O_j = max_i log N(x_i; g_j, v_j I) / d over the
      training set, for the generated samples used; higher = more likely a
      copy.
    log_variances: (N,) fitted log-variances of the generated components.
    generated_index: (N,) int32 rows of `generated` used as centres (all of
      them, in order, unless more than `max_generated` were given).
    nearest_train_index: (N,) int32 nearest training row of each centre.
    nearest_train_distance: (N,) Euclidean distance to it, in standardised
      units.
    fit_epochs, fit_converged: the bandwidth fit's epochs and early stop.
    fit_losses: (max_epochs,) its epoch-mean objective.
    baseline_epochs, baseline_converged: the same for the baseline fit (-1
      and True when `baseline_nll` was given).
    num_dims: dimensions used (test dimensions with zero variance dropped).
  """
  fld: jax.Array
  gap: jax.Array
  fld_train: jax.Array
  nll_test: jax.Array
  nll_train: jax.Array
  baseline_nll: jax.Array
  test_nlls: jax.Array
  memorization_scores: jax.Array
  log_variances: jax.Array
  generated_index: jax.Array
  nearest_train_index: jax.Array
  nearest_train_distance: jax.Array
  fit_epochs: jax.Array
  fit_converged: jax.Array
  fit_losses: jax.Array
  baseline_epochs: jax.Array
  baseline_converged: jax.Array
  num_dims: jax.Array


@_results.result
class BaselineResult:
  """The baseline constant C of FLD.

  Attributes:
    nll: C, mean test NLL per dimension of the mixture on `centre_index`.
    centre_index: (k,) int32 training rows used as centres; the others
      were the fit set.
    epochs, converged: the fit's epochs and early stop.
  """
  nll: jax.Array
  centre_index: jax.Array
  epochs: jax.Array
  converged: jax.Array


# --------------------------------------------------------------------------
# Standardisation.


def _standardizer(test):
  """Test mean, unbiased std and the mask of dimensions with variance."""
  mean = jnp.mean(test, axis=0)
  std = jnp.std(test, axis=0, ddof=1)
  keep = std > 1e-6 * jnp.maximum(jnp.abs(mean), 1e-30)
  safe = jnp.where(keep, std, 1.0)
  return mean, safe, keep


def _standardize(x, mean, std, keep):
  return jnp.where(keep, (x - mean) / std, 0.0)


# --------------------------------------------------------------------------
# Blocked distances and mixture log-likelihoods.


def _row_exact_sq_distances(xb, centres):
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


def _weights(log_var, dim):
  """(w, c) with log N(x; g_j, v_j I) - log N = c_j - w_j |x - g_j|^2."""
  n_comp = log_var.shape[0]
  return (0.5 * jnp.exp(-log_var),
          -0.5 * dim * (log_var + LOG_2PI) - math.log(n_comp))


def _mixture_lls(d2, log_var, dim):
  """log p(x_i) = logsumexp_j log N(x_i; g_j, v_j I) - log N (no origin)."""
  w, c = _weights(log_var, dim)
  return jax.nn.logsumexp(c - d2 * w, axis=1)


def _nll_per_dim(x, centres, log_var, dim, block_size, mesh=None):
  """(n,) -log p(x_i) / d, blocked over the rows of x.

  With `mesh`, the rows of x are sharded over its devices and the (at most
  `max_generated`, small) centres replicated: each device scores its rows
  against every centre, so each row's log-sum-exp and its exact nearest
  distance are the single-device ones.
  """
  if mesh is not None:
    spec = PartitionSpec(tuple(mesh.axis_names))
    out = jax.shard_map(
        lambda xl, g, lv, d: _nll_per_dim(xl, g, lv, d, block_size),
        mesh=mesh, in_specs=(spec, PartitionSpec(), PartitionSpec(),
                             PartitionSpec()), out_specs=spec)(
                                 sharding.shard_rows(x, mesh), centres,
                                 log_var, dim)
    return sharding.unshard_rows(out, x.shape[0], mesh)
  fn = lambda xb, _: -_mixture_lls(_row_exact_sq_distances(xb, centres),
                                   log_var, dim) / dim
  return distances.map_row_blocks(fn, x, block_size=block_size)


@functools.partial(jax.jit, static_argnames=("block_size", "mesh"))
def _nll_jit(x, centres, log_var, dim, block_size, mesh=None):
  return _nll_per_dim(x, centres, log_var, dim, block_size, mesh)


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
  return _nll_jit(x, centres, log_variances, jnp.float32(np.shape(x)[1]),
                  block_size, mesh)


# --------------------------------------------------------------------------
# The bandwidth fit.


def _fit_block(d2, origin_d2, valid, w, c, w0, c0, dim):
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


def _batch_layout(n, batch_size, block_size):
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


def _fit(x, centres, key, dim, *, init, lr, max_epochs, batch_size, tol,
         block_size, max_cache_bytes):
  """Fits the centres' log-variances to x (already standardised).

  Returns:
    (MixtureFit, mean NLL per dimension of x under the fitted mixture).
  """
  n, n_comp = x.shape[0], centres.shape[0]
  pos, valid = _batch_layout(n, batch_size, block_size)
  num_batches, blocks, b = pos.shape
  num_blocks = num_batches * blocks
  subs = b // EPOCH_ROWS
  if num_batches > 1:
    rows = jax.random.permutation(key, n)[pos].reshape(num_blocks, b)
  else:   # one full batch per step: the row order cannot matter
    rows = jnp.asarray(pos.reshape(num_blocks, b))
  valid = jnp.asarray(valid.reshape(num_blocks, b))
  mean_x = jnp.mean(x, axis=0)
  origin_d2 = jnp.sum(jnp.square(x - mean_x), axis=1)[rows]
  cache = num_blocks * b * n_comp * 4 <= max_cache_bytes
  slots = jnp.arange(num_blocks * b, dtype=jnp.int32).reshape(num_blocks, b)

  def raw_block(k):
    d2 = distances.sq_distances(x[rows[k]], centres)
    return jnp.where(valid[k][:, None], d2, 0.0)

  # First pass: each centre's nearest row of x (slot in the layout), and the
  # cached distances when they fit the budget.
  def first(carry, k):
    best, best_slot = carry
    d2 = raw_block(k)
    i = jnp.argmin(jnp.where(valid[k][:, None], d2, jnp.inf), axis=0)
    dmin = jnp.where(valid[k][i], d2[i, jnp.arange(n_comp)], jnp.inf)
    better = dmin < best
    carry = (jnp.where(better, dmin, best),
             jnp.where(better, slots[k][i], best_slot))
    return carry, (d2 if cache else None)

  init_carry = (jnp.full((n_comp,), jnp.inf, x.dtype),
                jnp.zeros((n_comp,), jnp.int32))
  (_, best_slot), cached = _scan(first, init_carry,
                                    jnp.arange(num_blocks))
  # The matmul formula leaves ~eps |x|^2 of cancellation error, so an exact
  # copy would sit at ~1e-4 instead of 0: recompute each centre's nearest
  # distance as a sum of squared differences.
  nearest_index = rows.reshape(-1)[best_slot]
  nearest = jnp.sum(jnp.square(x[nearest_index] - centres), axis=1)
  cols = jnp.arange(n_comp)
  if cache:
    cached = cached.reshape(num_blocks * b, n_comp).at[best_slot, cols].set(
        nearest).reshape(num_blocks, b, n_comp)
    get_block = lambda k: cached[k]
    cached_subs = cached.reshape(num_blocks * subs, EPOCH_ROWS, n_comp)
  else:
    def get_block(k):
      return jnp.where(slots[k][:, None] == best_slot[None, :],
                       nearest[None, :], raw_block(k))

  if init == "nearest":
    log_var = jnp.log((nearest + INIT_EPS) / dim)
  else:
    log_var = jnp.zeros((n_comp,), x.dtype)
  params = (log_var, jnp.zeros((), x.dtype))
  optimizer = optax.adam(lr)
  opt_state = optimizer.init(params)

  def batch_step(state, batch_blocks):
    params, opt_state = state
    w, c = _weights(params[0], dim)
    w0 = 0.5 * ORIGIN_SCALE * jnp.exp(-params[1])
    c0 = -0.5 * dim * (params[1] + LOG_2PI)

    def block_step(acc, k):
      # The block's distances, in sub-blocks of EPOCH_ROWS rows (cache-sized).
      if cache:
        sub_block = lambda j: cached_subs[k * subs + j]
      else:
        d2 = get_block(k).reshape(subs, EPOCH_ROWS, n_comp)
        sub_block = lambda j: d2[j]
      o2 = origin_d2[k].reshape(subs, EPOCH_ROWS)
      ok = valid[k].reshape(subs, EPOCH_ROWS)

      def sub_step(acc, j):
        out = _fit_block(sub_block(j), o2[j], ok[j], w, c, w0, c0, dim)
        return jax.tree.map(jnp.add, acc, out), None

      return _scan(sub_step, acc, jnp.arange(subs))[0], None

    zero = (jnp.zeros((), x.dtype), jnp.zeros((n_comp,), x.dtype),
            jnp.zeros((), x.dtype), jnp.zeros((), x.dtype))
    (ll, g, g0, count), _ = _scan(block_step, zero, batch_blocks)
    scale = -1.0 / (dim * count)
    grads = (scale * g, scale * g0)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    new_lv, new_lv0 = optax.apply_updates(params, updates)
    params = (jnp.clip(new_lv, -40.0, 40.0), new_lv0)
    return (params, opt_state), scale * ll

  batch_blocks = jnp.arange(num_blocks).reshape(num_batches, blocks)

  def epoch(state):
    e, params, opt_state, losses, done = state
    (params, opt_state), batch_losses = _scan(
        batch_step, (params, opt_state), batch_blocks)
    mean_loss = jnp.mean(batch_losses)
    losses = losses.at[e].set(mean_loss)
    recent = losses[jnp.clip(e - jnp.arange(1, 5), 0, max_epochs - 1)]
    done = (e > 5) & (jnp.max(jnp.abs(mean_loss - recent)) < tol)
    return e + 1, params, opt_state, losses, done

  def cond(state):
    e, _, _, _, done = state
    return (e < max_epochs) & ~done

  state = (jnp.int32(0), params, opt_state,
           jnp.zeros((max_epochs,), x.dtype), jnp.bool_(False))
  epochs, params, _, losses, done = lax.while_loop(cond, epoch, state)
  last = losses[jnp.maximum(epochs - 1, 0)]
  losses = jnp.where(jnp.arange(max_epochs) < epochs, losses, last)
  fit = MixtureFit(log_variances=params[0], origin_log_variance=params[1],
                   losses=losses, epochs=epochs, converged=done,
                   nearest_sq_distance=nearest,
                   nearest_index=nearest_index.astype(jnp.int32))

  # Mean NLL of x (no origin component) under the fitted mixture.
  def nll_block(k):
    ll = _mixture_lls(get_block(k), params[0], dim)
    return jnp.sum(jnp.where(valid[k], ll, 0.0))

  _, totals = _scan(lambda c, k: (c, nll_block(k)), 0.0,
                    jnp.arange(num_blocks))
  train_nll = -jnp.sum(totals) / (n * dim)
  return fit, train_nll


_FIT_STATIC = ("init", "max_epochs", "batch_size", "block_size",
               "max_cache_bytes")


def _check_fit_options(init, max_epochs, batch_size, block_size):
  if init not in INITS:
    raise ValueError(f"`init` must be one of {INITS}; got {init!r}.")
  _checks.check_positive_int(max_epochs, "max_epochs")
  _checks.check_positive_int(batch_size, "batch_size")
  _checks.check_positive_int(block_size, "block_size")


@functools.partial(jax.jit, static_argnames=_FIT_STATIC)
def _fit_jit(x, centres, key, dim, **options):
  return _fit(x, centres, key, dim, **options)


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
  _check_fit_options(init, max_epochs, batch_size, block_size)
  fit, _ = _fit_jit(jnp.asarray(x, jnp.float32),
                    jnp.asarray(centres, jnp.float32), key,
                    jnp.float32(np.shape(x)[1]), init=init, lr=float(lr),
                    max_epochs=int(max_epochs), batch_size=int(batch_size),
                    tol=float(tol), block_size=int(block_size),
                    max_cache_bytes=int(max_cache_bytes))
  return fit


# --------------------------------------------------------------------------
# The baseline and FLD.


# FLD is a composition of separately jitted pieces (standardisation, the
# fit, the NLL pass), so pieces of equal shapes share compilations (e.g. the
# fit of several models against one training set); the composition is pure,
# so `jax.jit` / `vmap` of `fld` itself traces through it.


@functools.partial(jax.jit, static_argnames=("max_generated",))
def _prepare(train, test, generated, key, max_generated):
  """Caps the generated set and standardises all three by test statistics."""
  # The fits run unsharded: rows sharded on an Explicit mesh are gathered.
  train, test, generated = map(sharding.replicated, (train, test, generated))
  n_gen = generated.shape[0]
  if n_gen > max_generated:
    gen_index = jax.random.permutation(key, n_gen)[:max_generated]
  else:
    gen_index = jnp.arange(n_gen)
  gen_index = gen_index.astype(jnp.int32)
  mean, std, keep = _standardizer(test)
  dim = jnp.sum(keep).astype(jnp.float32)
  return (_standardize(train, mean, std, keep),
          _standardize(test, mean, std, keep),
          _standardize(generated[gen_index], mean, std, keep), gen_index, dim)


@jax.jit
def _prepare_pair(train, test):
  train, test = map(sharding.replicated, (train, test))
  mean, std, keep = _standardizer(test)
  return (_standardize(train, mean, std, keep),
          _standardize(test, mean, std, keep),
          jnp.sum(keep).astype(jnp.float32))


def _baseline(train_s, test_s, key, dim, size, mesh=None, **options):
  """C on standardised sets: centres = `size` shuffled train rows."""
  key_split, key_fit = jax.random.split(key)
  rest, centres, index = intervals.permuted_split(key_split, train_s, size)
  fit, _ = _fit_jit(rest, centres, key_fit, dim, **options)
  nll = _mean(_nll_jit(test_s, centres, fit.log_variances, dim,
                       options["block_size"], mesh))
  return BaselineResult(nll=nll, centre_index=index, epochs=fit.epochs,
                        converged=fit.converged)


_mean = jax.jit(jnp.mean)


@jax.jit
def _memorization_scores(nearest_sq_distance, log_var, dim):
  """log N(nearest train row; centre, exp(log_var) I) per dimension."""
  return (-0.5 * nearest_sq_distance * jnp.exp(-log_var) / dim
          - 0.5 * (log_var + LOG_2PI))


def _fld(train, test, generated, key, baseline_nll, *, max_generated,
         baseline_size, mesh=None, **options):
  """FLD of float32 arrays with validated options (baseline_nll may be None)."""
  key_gen, key_fit, key_base = jax.random.split(key, 3)
  train_s, test_s, gen_s, gen_index, dim = _prepare(
      train, test, generated, key_gen, max_generated=max_generated)
  fit, train_nll = _fit_jit(train_s, gen_s, key_fit, dim, **options)
  log_var = fit.log_variances
  test_nlls = _nll_jit(test_s, gen_s, log_var, dim, options["block_size"],
                       mesh)
  test_nll = _mean(test_nlls)
  if baseline_nll is None:
    base = _baseline(train_s, test_s, key_base, dim, baseline_size, mesh,
                     **options)
    c, base_epochs, base_conv = base.nll, base.epochs, base.converged
  else:
    c = jnp.asarray(baseline_nll, jnp.float32)
    base_epochs, base_conv = jnp.int32(-1), jnp.bool_(True)
  scores = _memorization_scores(fit.nearest_sq_distance, log_var, dim)
  return FLDResult(
      fld=100.0 * (test_nll - c), gap=100.0 * (train_nll - test_nll),
      fld_train=100.0 * (train_nll - c), nll_test=test_nll,
      nll_train=train_nll, baseline_nll=c, test_nlls=test_nlls,
      memorization_scores=scores, log_variances=log_var,
      generated_index=gen_index, nearest_train_index=fit.nearest_index,
      nearest_train_distance=jnp.sqrt(fit.nearest_sq_distance),
      fit_epochs=fit.epochs, fit_converged=fit.converged,
      fit_losses=fit.losses, baseline_epochs=base_epochs,
      baseline_converged=base_conv, num_dims=dim.astype(jnp.int32))


def _float_sets(*xs, names=("train", "test", "generated")):
  """The sets as float arrays, rescaled together by a power of two.

  FLD standardises by the test set, so it is invariant to a common scale;
  sets outside [2^-32, 2^32] are brought into float32's range exactly
  (`_checks.rescale`) before the float32 standardisation.
  """
  xs = [_checks.as_float(x, name) for x, name in zip(xs, names)]
  if all(np.ndim(x) == 2 and np.size(x) for x in xs):
    xs = _checks.rescale(*xs)[0]
  return xs


@jax.jit
def _varies(x):
  """Whether some column of x is not constant (some std > 0), exactly."""
  return jnp.any(jnp.max(x, axis=0) > jnp.min(x, axis=0))


def _check_sets(train, test, generated, min_test=2):
  _checks.check_features(train, "train", min_rows=2)
  d = np.shape(train)[1]
  _checks.check_features(test, "test", min_rows=min_test, dim=d)
  if generated is not None:
    _checks.check_features(generated, "generated", min_rows=1, dim=d)
  if _checks.is_concrete(test):
    with jax.ensure_compile_time_eval():  # jitted: global arrays stay put
      varies = bool(_varies(jnp.asarray(test)))
    if not varies:
      raise ValueError("`test` has zero variance in every dimension, so FLD "
                       "cannot standardise by it; pass distinct test samples.")


def default_baseline_size(num_train: int, num_generated: int,
                          max_generated: Optional[int] = 10_000) -> int:
  """k = min(N, floor(n_train / 2)) with N the generated set after the cap."""
  n = num_generated if max_generated is None else min(num_generated,
                                                      max_generated)
  return min(n, num_train // 2)


def fld_baseline(train: jax.Array, test: jax.Array, *, key: jax.Array,
                 size: int, init: str = "nearest", lr: float = 0.5,
                 max_epochs: int = 50, batch_size: int = 10_000,
                 tol: float = 5e-4,
                 block_size: int = distances.DEFAULT_BLOCK_SIZE,
                 max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
                 mesh: Optional[Mesh] = None) -> BaselineResult:
  """FLD's baseline constant C, to share between models of the same size.

  C = NLL per dimension of the test set under the mixture centred on `size`
  randomly chosen training points, fitted (as in `fld`) on the other
  training points. Pass `.nll` as `fld(..., baseline_nll=...)` to score
  several models with N generated samples each against one C; the reference
  uses size = min(N, floor(n_train / 2)) (`default_baseline_size`).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact).

  Args:
    train: (n_train, d) training features.
    test: (n_test, d) held-out real features (they set the standardisation).
    key: `jax.random` key for the split and the row order.
    size: number of training points used as centres, in [1, n_train - 1].
    init, lr, max_epochs, batch_size, tol, block_size, max_cache_bytes: as in
      `fit_bandwidths`.
    mesh: score the test set sharded by rows over this mesh (as in `fld`).

  Returns:
    A `BaselineResult`; `.nll` is C.
  """
  train, test = _float_sets(train, test)
  _check_sets(train, test, None)
  _checks.check_same_key(key, "fld_baseline", train, test)
  _check_fit_options(init, max_epochs, batch_size, block_size)
  n_train = np.shape(train)[0]
  if int(size) != size or not 1 <= size <= n_train - 1:
    raise ValueError(f"`size` must be an integer in [1, n_train - 1] = "
                     f"[1, {n_train - 1}]; got {size}.")
  train_s, test_s, dim = _prepare_pair(jnp.asarray(train, jnp.float32),
                                       jnp.asarray(test, jnp.float32))
  return _baseline(train_s, test_s, key, dim, int(size), mesh, init=init,
                   lr=float(lr), max_epochs=int(max_epochs),
                   batch_size=int(batch_size), tol=float(tol),
                   block_size=int(block_size),
                   max_cache_bytes=int(max_cache_bytes))


def fld(train: jax.Array, test: jax.Array, generated: jax.Array, *,
        key: jax.Array, max_generated: Optional[int] = 10_000,
        baseline_nll: Optional[float] = None,
        baseline_size: Optional[int] = None, init: str = "nearest",
        lr: float = 0.5, max_epochs: int = 50, batch_size: int = 10_000,
        tol: float = 5e-4, block_size: int = distances.DEFAULT_BLOCK_SIZE,
        max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
        mesh: Optional[Mesh] = None) -> FLDResult:
  """Feature Likelihood Divergence of generated features, with the gap.

  FLD = 100 (NLL(test) - C) and gap = 100 (NLL(train) - NLL(test)), NLLs in
  nats per dimension under the mixture of isotropic Gaussians centred on the
  generated samples whose log-variances were fitted to the training set
  (see the module docstring for the exact procedure and conventions).

  Memory: the n_train x N distances are cached if they fit
  `max_cache_bytes` (10k x 10k: 400 MB) and recomputed in blocks of
  `block_size` rows every epoch otherwise; nothing else is larger than
  block_size x N.

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact) before FLD's float32 standardisation.

  Args:
    train: (n_train, d) the generator's training features, n_train >= 2.
    test: (n_test, d) held-out real features, n_test >= 2; they set the
      standardisation (per-dimension mean and unbiased std).
    generated: (N, d) generated features.
    key: `jax.random` key: the cap's subset, the fit's row order and the
      baseline's split.
    max_generated: use at most this many generated samples (drawn without
      replacement), as the reference does; None uses all.
    baseline_nll: C if known (e.g. from `fld_baseline`, shared across
      models); None fits it here.
    baseline_size: centres of the baseline; default min(N, n_train // 2).
    init: "nearest" or "unit" initial log-variances (`fit_bandwidths`).
    lr: Adam learning rate.
    max_epochs: most epochs of each fit.
    batch_size: training rows per Adam step.
    tol: early-stopping tolerance (0 runs max_epochs).
    block_size: rows per distance block.
    max_cache_bytes: memory budget of the cached distances.
    mesh: score the test set (and the baseline's) with its rows sharded
      over this mesh's devices, the <= max_generated centres replicated;
      same values. The bandwidth fits run unsharded (their n_train x N
      distances are cached or recomputed per epoch on one device).

  Returns:
    An `FLDResult`: `.fld`, `.gap`, the NLLs, the per-sample memorisation
    scores and the fits' diagnostics (`.fit_converged` is False when the
    fit used all `max_epochs`, typical with exact copies whose bandwidths
    keep shrinking).

  References:
    Jiralerspong et al., NeurIPS 2023; package marcojira/fld (conventions
    as listed in the module docstring).
  """
  train, test, generated = _float_sets(train, test, generated)
  _check_sets(train, test, generated)
  _checks.check_same_key(key, "fld", train, test, generated)
  _check_fit_options(init, max_epochs, batch_size, block_size)
  n_train, n_gen = np.shape(train)[0], np.shape(generated)[0]
  if max_generated is not None:
    _checks.check_positive_int(max_generated, "max_generated")
  cap = n_gen if max_generated is None else int(max_generated)
  if baseline_size is None:
    baseline_size = default_baseline_size(n_train, n_gen, cap)
  if baseline_nll is None and not 1 <= baseline_size <= n_train - 1:
    raise ValueError(f"`baseline_size` must lie in [1, n_train - 1] = "
                     f"[1, {n_train - 1}]; got {baseline_size}.")
  result = _fld(
      jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32),
      jnp.asarray(generated, jnp.float32), key, baseline_nll,
      max_generated=cap, baseline_size=int(baseline_size), init=init,
      lr=float(lr), max_epochs=int(max_epochs), batch_size=int(batch_size),
      tol=float(tol), block_size=int(block_size),
      max_cache_bytes=int(max_cache_bytes), mesh=mesh)
  if _checks.is_concrete(result.fld):
    value = float(result.fld)
    if value > 1000:
      logging.warning("FLD = %.4g > 1000: the generated set is likely "
                      "(almost) entirely memorised.", value)
    if not math.isfinite(value):
      logging.warning("FLD is %s: the generated features are too far from "
                      "the test set for any test point to have positive "
                      "likelihood in float32.", value)
  return result
