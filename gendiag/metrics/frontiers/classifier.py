"""The classifier (density-ratio) estimator of divergence frontiers.

A real-vs-generated probe (`gendiag.ops.probe`) estimates s = log dP/dQ by
cross-fitting (each sample scored by a probe that did not train on it), and
`gendiag.metrics.frontiers.histograms.ratio_frontier` plugs s into

  KL(P || R_lam) = E_P[s - log(lam e^s + 1 - lam)],
  KL(Q || R_lam) = -E_Q[log(lam e^s + 1 - lam)],
  FI = (E_P[g(tanh(s / 2))] + E_Q[g(tanh(s / 2))]) / 2.

No quantization, so none of its bias: on continuous P, Q it estimates the
population frontier when the probe's function class holds log dP/dQ.

References:
  Pillutla, Liu, Thickstun, Welleck, Swayamdipta, Zellers, Oh, Choi,
  Harchaoui. MAUVE Scores for Generative Models: Theory and Practice. JMLR
  2023 (classifier-based estimation of the frontier).
"""

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.metrics.frontiers import histograms
from gendiag.metrics.frontiers import scores as scores_lib
from gendiag.ops import intervals
from gendiag.ops import probe as probe_lib


@_results.result(static=("num_folds", "hidden_sizes"))
class ClassifierFrontierResult:
  """The divergence frontier from a classifier's density-ratio estimate.

  Attributes:
    mauve: () MAUVE, in (0, 1].
    frontier_integral: () FI, in [0, 1].
    weights: (m,) mixture weights lam.
    kl_generated: (m,) KL(Q || R_lam).
    kl_real: (m,) KL(P || R_lam).
    log_ratio_real: (n,) cross-fitted estimate of log dP/dQ at real rows.
    log_ratio_generated: (m,) the same at generated rows.
    ratio_mean_generated: () mean over generated rows of exp(log ratio),
      which is 1 for the true ratio; far from 1 = a poor ratio estimate.
    heldout_accuracy: () balanced accuracy of the held-out log ratios at 0.
    train_loss: (num_folds,) each probe's final cross-entropy.
    grad_norm: (num_folds,) each probe's final gradient norm (large = the
      step budget ended before convergence).
    mauve_ci: (2,) bootstrap interval of `mauve`, or None.
    frontier_integral_ci: (2,) the same for `frontier_integral`, or None.
    mauve_std: () bootstrap standard deviation of `mauve`, or None.
    frontier_integral_std: () the same for `frontier_integral`, or None.
    num_folds: cross-fitting folds.
    hidden_sizes: the probe's hidden widths (() = logistic regression).
  """
  mauve: jax.Array
  frontier_integral: jax.Array
  weights: jax.Array
  kl_generated: jax.Array
  kl_real: jax.Array
  log_ratio_real: jax.Array
  log_ratio_generated: jax.Array
  ratio_mean_generated: jax.Array
  heldout_accuracy: jax.Array
  train_loss: jax.Array
  grad_norm: jax.Array
  mauve_ci: Optional[jax.Array] = None
  frontier_integral_ci: Optional[jax.Array] = None
  mauve_std: Optional[jax.Array] = None
  frontier_integral_std: Optional[jax.Array] = None
  num_folds: int = 2
  hidden_sizes: tuple = ()


def _folds(key, n, num_folds):
  """A seeded permutation cut into `num_folds` nearly equal index sets."""
  perm = np.asarray(jax.random.permutation(key, n))
  return np.array_split(perm, num_folds)


_ratio_frontier_jit = jax.jit(histograms.ratio_frontier,
                              static_argnames=("num_weights",))


@functools.partial(jax.jit, static_argnames=("num_resamples", "num_weights"))
def _bootstrap_ratio(key, s_real, s_gen, scaling_factor, *, num_resamples,
                     num_weights):
  key_r, key_g = jax.random.split(key)
  w_real = intervals.resample_weights(key_r, s_real.shape[0], num_resamples)
  w_gen = intervals.resample_weights(key_g, s_gen.shape[0], num_resamples)

  def one(wr, wg):
    front = histograms.ratio_frontier(
        s_real, s_gen, weights_real=wr, weights_generated=wg,
        scaling_factor=scaling_factor, num_weights=num_weights)
    return front.mauve, front.frontier_integral

  return jax.vmap(one)(w_real, w_gen)


def _cross_fitted_log_ratios(real, generated, keys, *, num_folds,
                             **probe_options):
  """log dP/dQ of every row by a probe that did not train on it.

  Args:
    real, generated: float32 numpy arrays.
    keys: (key of the real folds, of the generated folds, of the fits).
    num_folds: folds per set.
    **probe_options: `ops.probe.fit_probe`'s options.

  Returns:
    ((n,) and (m,) log ratios, the probes' final losses and gradient norms).
  """
  key_r, key_g, key_fit = keys
  n, m = real.shape[0], generated.shape[0]
  folds_r, folds_g = _folds(key_r, n, num_folds), _folds(key_g, m, num_folds)
  s_real, s_gen = np.zeros(n, np.float32), np.zeros(m, np.float32)
  losses, norms = [], []
  for f in range(num_folds):
    train_r = np.concatenate([folds_r[j] for j in range(num_folds) if j != f])
    train_g = np.concatenate([folds_g[j] for j in range(num_folds) if j != f])
    probe = probe_lib.fit_probe(
        real[train_r], generated[train_g], key=jax.random.fold_in(key_fit, f),
        **probe_options)
    s_real[folds_r[f]] = np.asarray(
        probe_lib.log_density_ratio(probe, real[folds_r[f]]))
    s_gen[folds_g[f]] = np.asarray(
        probe_lib.log_density_ratio(probe, generated[folds_g[f]]))
    losses.append(probe.train_loss)
    norms.append(probe.grad_norm)
  return jnp.asarray(s_real), jnp.asarray(s_gen), losses, norms


def classifier_frontier(real: jax.Array, generated: jax.Array, *,
                        key: jax.Array, num_folds: int = 2,
                        hidden_sizes: Sequence[int] = (),
                        num_steps: int = 500, learning_rate: float = 1e-2,
                        weight_decay: float = 1e-4,
                        batch_size: Optional[int] = None,
                        scaling_factor: float = histograms.SCALING_FACTOR,
                        num_weights: int = histograms.NUM_WEIGHTS,
                        num_resamples: int = 0, level: float = 0.95
                        ) -> ClassifierFrontierResult:
  """The divergence frontier, MAUVE and FI from a classifier's density ratio.

  Each set is cut into `num_folds` folds (seeded); for each fold a probe
  (`ops.probe`: logistic regression or an MLP) is trained to tell real from
  generated on the other folds, and scores the fold's rows with
  s(x) = logit(x) + log(M_train / N_train), the Bayes estimate of log dP/dQ.
  Then (`histograms.ratio_frontier`), with means over the rows of each set,

    KL(P || R_lam) = mean_P[s - log(lam e^s + 1 - lam)],
    KL(Q || R_lam) = -mean_Q[log(lam e^s + 1 - lam)],
    FI = (mean_P[g(tanh(s/2))] + mean_Q[g(tanh(s/2))]) / 2,

  g(x) = 1 - (1 - x^2) artanh(x) / x. No quantization: consistent for the
  population frontier when log dP/dQ is in the probe's function class (for
  Gaussians with a shared covariance it is linear, so logistic regression
  suffices). A poor probe biases towards P = Q (MAUVE up, FI down), like
  quantization; `ratio_mean_generated` far from 1 flags a poor ratio. The
  bootstrap resamples rows at fixed log ratios (the probe is not refitted).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact).

  Args:
    real: (n, d) real features, at least num_folds rows.
    generated: (m, d) model features, at least num_folds rows.
    key: PRNG key (folds, probe initialisation, minibatches, bootstrap).
    num_folds: cross-fitting folds (>= 2).
    hidden_sizes: probe hidden widths; () is logistic regression.
    num_steps, learning_rate, weight_decay, batch_size: `ops.probe.fit_probe`.
    scaling_factor: MAUVE's c.
    num_weights: lam grid size.
    num_resamples: bootstrap replicates for the intervals (0: none).
    level: confidence level.

  Returns:
    ClassifierFrontierResult.

  References:
    Pillutla et al. JMLR 2023 (classifier-based estimation of divergence
    frontiers, where the likelihood-ratio formulas are derived).
    mauve-text implements no such estimator.
  """
  _checks.check_addressable("classifier_frontier", real=real,
                            generated=generated)
  _checks.check_positive_int(num_folds, "num_folds", minimum=2)
  real, generated = _checks.check_pair(real, generated, min_rows=num_folds)
  (real, generated), _ = _checks.rescale(real, generated)  # scale-invariant
  _checks.check_positive_int(num_resamples, "num_resamples", minimum=0)
  if num_resamples == 1:
    raise ValueError("num_resamples must be 0 (no interval) or >= 2.")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  _checks.check_positive_int(num_weights, "num_weights", minimum=2)
  # Folds are gathered on the host (a JAX gather per fold shape otherwise).
  real = np.asarray(real, np.float32)
  generated = np.asarray(generated, np.float32)
  key_r, key_g, key_fit, key_boot = jax.random.split(key, 4)
  s_real, s_gen, losses, norms = _cross_fitted_log_ratios(
      real, generated, (key_r, key_g, key_fit), num_folds=num_folds,
      hidden_sizes=hidden_sizes, num_steps=num_steps,
      learning_rate=learning_rate, weight_decay=weight_decay,
      batch_size=batch_size)
  c = jnp.asarray(scaling_factor, jnp.float32)
  front = _ratio_frontier_jit(s_real, s_gen, scaling_factor=c,
                              num_weights=int(num_weights))
  extra = {}
  if num_resamples:
    mauves, fis = _bootstrap_ratio(key_boot, s_real, s_gen, c,
                                   num_resamples=int(num_resamples),
                                   num_weights=int(num_weights))
    extra.update(scores_lib.interval_fields(front, mauves, fis, level))
  # Summaries of the host-side scores in numpy, not as small programs.
  sr, sg = np.asarray(s_real), np.asarray(s_gen)
  accuracy = np.float32(0.5 * (np.mean(sr > 0) + np.mean(sg <= 0)))
  return ClassifierFrontierResult(
      mauve=front.mauve, frontier_integral=front.frontier_integral,
      weights=front.weights, kl_generated=front.kl_generated,
      kl_real=front.kl_real, log_ratio_real=s_real, log_ratio_generated=s_gen,
      ratio_mean_generated=jnp.asarray(np.mean(np.exp(sg), dtype=np.float32)),
      heldout_accuracy=jnp.asarray(accuracy),
      train_loss=jnp.asarray(np.array([np.asarray(v) for v in losses])),
      grad_norm=jnp.asarray(np.array([np.asarray(v) for v in norms])),
      num_folds=int(num_folds),
      hidden_sizes=tuple(int(h) for h in hidden_sizes), **extra)
