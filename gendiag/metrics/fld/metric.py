"""`fld` and `fld_baseline`: FLD, the generalisation gap and the baseline C.

FLD = 100 (NLL(test) - C) and gap = 100 (NLL(train) - NLL(test)) under the
mixture on the generated samples fitted to train (`gendiag.metrics.fld.fit`);
C is the same procedure with training points as centres. The procedure and
its conventions are described in `gendiag.metrics.fld`.

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
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.metrics.fld import fit as fit_lib
from gendiag.metrics.fld import mixture
from gendiag.ops import distances
from gendiag.ops import intervals
from gendiag.ops import sharding


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
    train_nlls: (n_train,) NLL per dimension of each training sample, from
      the fit's distances (mean: nll_train up to float32 rounding).
    memorization_scores: (N,) O_j = max_i log N(x_i; g_j, v_j I) / d over the
      training set, for the generated samples used; higher = more likely a
      copy.
    log_variances: (N,) fitted log-variances of the generated components.
    generated_index: (N,) int32 rows of `generated` used as centres (all of
      them, in order, unless more than `max_generated` were given).
    nearest_train_index: (N,) int32 nearest training row of each centre.
    nearest_train_distance: (N,) Euclidean distance to it, in standardised
      units.
    num_iterations, converged: the bandwidth fit's epochs and early stop.
    fit_losses: (max_epochs,) its epoch-mean objective.
    baseline_num_iterations, baseline_converged: the same for the baseline
      fit (-1 and True when `baseline_nll` was given).
    num_dims: dimensions used (test dimensions with zero variance dropped).
  """
  fld: jax.Array
  gap: jax.Array
  fld_train: jax.Array
  nll_test: jax.Array
  nll_train: jax.Array
  baseline_nll: jax.Array
  test_nlls: jax.Array
  train_nlls: jax.Array
  memorization_scores: jax.Array
  log_variances: jax.Array
  generated_index: jax.Array
  nearest_train_index: jax.Array
  nearest_train_distance: jax.Array
  num_iterations: jax.Array
  converged: jax.Array
  fit_losses: jax.Array
  baseline_num_iterations: jax.Array
  baseline_converged: jax.Array
  num_dims: jax.Array


@_results.result
class BaselineResult:
  """The baseline constant C of FLD.

  Attributes:
    nll: C, mean test NLL per dimension of the mixture on `centre_index`.
    centre_index: (k,) int32 training rows used as centres; the others
      were the fit set.
    num_iterations, converged: the fit's epochs and early stop.
  """
  nll: jax.Array
  centre_index: jax.Array
  num_iterations: jax.Array
  converged: jax.Array


# --------------------------------------------------------------------------
# The baseline and FLD.


# FLD is a composition of separately jitted pieces (standardisation, the
# fit, the NLL pass), so pieces of equal shapes share compilations (e.g. the
# fit of several models against one training set); the composition is pure,
# so `jax.jit` / `vmap` of `fld` itself traces through it.


@functools.partial(jax.jit, static_argnames=("max_generated",))
def prepare(train, test, generated, key, max_generated):
  """Caps the generated set and standardises all three by test statistics."""
  # The fits run unsharded: rows sharded on an Explicit mesh are gathered.
  train, test, generated = map(sharding.replicated, (train, test, generated))
  n_gen = generated.shape[0]
  if n_gen > max_generated:
    gen_index = jax.random.permutation(key, n_gen)[:max_generated]
  else:
    gen_index = jnp.arange(n_gen)
  gen_index = gen_index.astype(jnp.int32)
  mean, std, keep = mixture.standardizer(test)
  dim = jnp.sum(keep).astype(jnp.float32)
  return (mixture.standardize(train, mean, std, keep),
          mixture.standardize(test, mean, std, keep),
          mixture.standardize(generated[gen_index], mean, std, keep),
          gen_index, dim)


@jax.jit
def _prepare_pair(train, test):
  train, test = map(sharding.replicated, (train, test))
  mean, std, keep = mixture.standardizer(test)
  return (mixture.standardize(train, mean, std, keep),
          mixture.standardize(test, mean, std, keep),
          jnp.sum(keep).astype(jnp.float32))


def _baseline(train_s, test_s, key, dim, size, mesh=None, **options):
  """C on standardised sets: centres = `size` shuffled train rows."""
  key_split, key_fit = jax.random.split(key)
  rest, centres, index = intervals.permuted_split(key_split, train_s, size)
  fit = fit_lib.fit_jit(rest, centres, key_fit, dim, **options)[0]
  nll = _mean(mixture.nll_jit(test_s, centres, fit.log_variances, dim,
                              options["block_size"], mesh))
  return BaselineResult(nll=nll, centre_index=index,
                        num_iterations=fit.num_iterations,
                        converged=fit.converged)


_mean = jax.jit(jnp.mean)


@jax.jit
def _memorization_scores(nearest_sq_distance, log_var, dim):
  """log N(nearest train row; centre, exp(log_var) I) per dimension."""
  return (-0.5 * nearest_sq_distance * jnp.exp(-log_var) / dim
          - 0.5 * (log_var + mixture.LOG_2PI))


def _fld(train, test, generated, key, baseline_nll, *, max_generated,
         baseline_size, mesh=None, **options):
  """FLD of float32 arrays with validated options (baseline_nll may be None)."""
  key_gen, key_fit, key_base = jax.random.split(key, 3)
  train_s, test_s, gen_s, gen_index, dim = prepare(
      train, test, generated, key_gen, max_generated=max_generated)
  fit, train_nll, train_nlls = fit_lib.fit_jit(train_s, gen_s, key_fit, dim,
                                               **options)
  log_var = fit.log_variances
  test_nlls = mixture.nll_jit(test_s, gen_s, log_var, dim,
                              options["block_size"], mesh)
  test_nll = _mean(test_nlls)
  if baseline_nll is None:
    base = _baseline(train_s, test_s, key_base, dim, baseline_size, mesh,
                     **options)
    c, base_epochs, base_conv = base.nll, base.num_iterations, base.converged
  else:
    c = jnp.asarray(baseline_nll, jnp.float32)
    base_epochs, base_conv = jnp.int32(-1), jnp.bool_(True)
  scores = _memorization_scores(fit.nearest_sq_distance, log_var, dim)
  return FLDResult(
      fld=100.0 * (test_nll - c), gap=100.0 * (train_nll - test_nll),
      fld_train=100.0 * (train_nll - c), nll_test=test_nll,
      nll_train=train_nll, baseline_nll=c, test_nlls=test_nlls,
      train_nlls=train_nlls,
      memorization_scores=scores, log_variances=log_var,
      generated_index=gen_index, nearest_train_index=fit.nearest_index,
      nearest_train_distance=jnp.sqrt(fit.nearest_sq_distance),
      num_iterations=fit.num_iterations, converged=fit.converged,
      fit_losses=fit.losses, baseline_num_iterations=base_epochs,
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


def fit_uses_key(num_train: int, num_generated: int,
                 max_generated: Optional[int] = 10_000,
                 batch_size: int = 10_000) -> bool:
  """Whether `fld`'s model fit depends on its key.

  The key draws the generated subset (only when N > max_generated) and the
  fit's row order (only when the training set spans more than one Adam
  batch); otherwise every key gives bitwise the same fit, test NLLs and
  gap, and only the baseline's split (`fld_baseline`) varies with it.
  """
  capped = max_generated is not None and num_generated > max_generated
  return capped or num_train > batch_size


def fld_baseline(train: jax.Array, test: jax.Array, *, key: jax.Array,
                 size: int, init: str = "nearest", lr: float = 0.5,
                 max_epochs: int = 50, batch_size: int = 10_000,
                 tol: float = 5e-4,
                 block_size: int = distances.DEFAULT_BLOCK_SIZE,
                 max_cache_bytes: int = fit_lib.DEFAULT_MAX_CACHE_BYTES,
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
  fit_lib.check_fit_options(init, max_epochs, batch_size, block_size)
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
        max_cache_bytes: int = fit_lib.DEFAULT_MAX_CACHE_BYTES,
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
    scores and the fits' diagnostics (`.converged` is False when the
    fit used all `max_epochs`, typical with exact copies whose bandwidths
    keep shrinking).

  References:
    Jiralerspong et al., NeurIPS 2023; package marcojira/fld (conventions
    as listed in the module docstring).
  """
  train, test, generated = _float_sets(train, test, generated)
  _check_sets(train, test, generated)
  _checks.check_same_key(key, "fld", train, test, generated)
  fit_lib.check_fit_options(init, max_epochs, batch_size, block_size)
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
