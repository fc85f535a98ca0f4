"""Bootstrap replicates of the report families' fitted metrics, fits held fixed.

  mode_bootstrap        GEL class masses refitted on resampled rows ("gel").
  prd_bootstrap         PRD's F scores from resampled cluster histograms.
  classifier_bootstrap  the classifier curve's F scores from resampled
                        held-out scores ("precision_recall").

The families turn the replicates into intervals with `gendiag.ops.intervals`.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from gendiag.metrics import gel as gel_lib
from gendiag.metrics.gel import modes as gel_modes
from gendiag.metrics import prd as prd_lib
from gendiag.ops import distances
from gendiag.ops import pr_curves


def mode_bootstrap(key, real, generated, real_labels, generated_labels,
                   witnesses, drop_threshold, *, num_resamples: int,
                   objective: str, kernel: str, num_classes: int,
                   class_moments: int):
  """Bootstrap refits of `gel_mode_probabilities`' scalars.

  Each replicate resamples the real rows and the generated rows with
  replacement (labels follow their rows), keeps the witnesses, and solves
  every GEL problem of the class-mass procedure again. The replicates run
  one after another through the estimate's own compiled program (same
  shapes and options), so the bootstrap compiles nothing new: a vmapped
  program would cost more to compile (~9 s on 2 cores) than the B refits
  take to run at the report's sizes, and would batch the Newton solves'
  Cholesky factorisations into parallel LAPACK calls (see
  `frechet.fid_term_replicates`).

  Args:
    key: PRNG key of the resamples.
    real: (n, d) real features.
    generated: (m, d) generated features.
    real_labels: (n,) int labels of the real rows.
    generated_labels: (m,) int labels of the generated rows (given or the
      k-NN vote of the estimate, `GELModeResult.generated_labels`).
    witnesses: (J, d) witness rows of the kernel moments.
    drop_threshold: a class is dropped below this share of its real mix.
    num_resamples: B.
    objective: 'et', 'el' or 'cue'.
    kernel: kernel name of the moments.
    num_classes: C.
    class_moments: principal moments per class problem.

  Returns:
    (B, 4) float32 numpy replicates of (hellinger_to_real, hellinger_to_generated,
    number of dropped classes, max class divergence).
  """
  n, m = real.shape[0], generated.shape[0]
  key_r, key_g = jax.random.split(key)
  rows_r = np.asarray(jax.random.randint(key_r, (num_resamples, n), 0, n))
  rows_g = np.asarray(jax.random.randint(key_g, (num_resamples, m), 0, m))
  name, obj = gel_lib.statistic.kernel_args(kernel)  # pylint: disable=protected-access
  # Rows are gathered on the host: one small program per gather otherwise.
  real, generated = np.asarray(real), np.asarray(generated)
  real_labels = np.asarray(real_labels)
  generated_labels = np.asarray(generated_labels)
  reps = []
  for i, j in zip(rows_r, rows_g):
    res = gel_modes.modes_core(
        real[i], generated[j], real_labels[i], generated_labels[j],
        witnesses, obj, 1.0, drop_threshold, objective=objective,
        moments="kernel", kernel=name, max_iterations=100, tol=None,
        block_size=distances.DEFAULT_BLOCK_SIZE, num_classes=num_classes,
        class_moments=class_moments)
    reps.append([res.hellinger_to_real, res.hellinger_to_generated,
                 np.asarray(res.dropped).sum(),
                 np.asarray(res.class_divergence).max()])
  return np.asarray(reps, np.float32)


def _resample_histograms(key, hist, count):
  """Multinomial(count, hist[r]) / count for each row r of (runs, C).

  Drawn as C conditional binomials per row (`jax.random.multinomial`), so
  the cost does not grow with `count`; drawing the `count` rows one by one
  (categorical) took 30 s per 200 replicates at 10,000 rows, 10 runs x 20
  clusters.
  """
  return jax.random.multinomial(key, count, hist, dtype=hist.dtype) / count


@functools.partial(jax.jit, static_argnames=(
    "num_real", "num_generated", "num_resamples", "num_angles", "beta"))
def prd_bootstrap(key, real_histograms, generated_histograms, *,
                  num_real: int, num_generated: int, num_resamples: int,
                  num_angles: int = 1001, beta: float = 8.0):
  """(B, 2) replicates of PRD's (F_beta, F_1/beta), clusterings held fixed.

  Resampling the rows of one k-means run with its clustering fixed makes
  the cluster counts Multinomial(n, p) (real) and Multinomial(m, q)
  (generated); each replicate resamples every run's histograms, averages
  the runs' curves as `prd` does and takes max F_beta / F_1/beta.

  Args:
    key: PRNG key.
    real_histograms: (runs, C) cluster masses p of the real rows
      (`PRDResult.real_histograms`).
    generated_histograms: (runs, C) the same for the generated rows.
    num_real: n, real rows clustered.
    num_generated: m, generated rows clustered.
    num_resamples: B.
    num_angles: points on the curve.
    beta: the F_beta summary's beta.

  Returns:
    (B, 2) float32 replicates of (F_beta, F_1/beta).
  """
  def one(k):
    kp, kq = jax.random.split(k)
    p = _resample_histograms(kp, real_histograms, num_real)
    q = _resample_histograms(kq, generated_histograms, num_generated)
    curves = jax.vmap(lambda a, b: pr_curves.pr_curve(
        a, b, num_angles=num_angles, beta=beta))(p, q)
    curve = pr_curves.curve_from_precision(jnp.mean(curves.precision, axis=0),
                                           curves.slopes[0], beta=beta)
    return jnp.stack(pr_curves.max_f_beta(
        curve.precision, jnp.mean(curves.recall, axis=0), beta=beta))

  keys = jax.random.split(key, num_resamples)
  return lax.map(one, keys)


@functools.partial(jax.jit, static_argnames=(
    "num_resamples", "num_angles", "beta"))
def classifier_bootstrap(key, logits_real, logits_generated, *,
                         num_resamples: int, num_angles: int = 1001,
                         beta: float = 8.0):
  """(B, 2) replicates of the classifier curve's (F_beta, F_1/beta).

  The held-out scores of the fitted ensemble are resampled with replacement
  (real and generated independently) and the curve alpha(lam) = min_t
  lam FNR(t) + FPR(t) is recomputed; the probes are held fixed.

  Args:
    key: PRNG key.
    logits_real: (N_test,) held-out real scores
      (`ClassifierPRCurve.logits_real`).
    logits_generated: (M_test,) held-out generated scores.
    num_resamples: B.
    num_angles: points on the curve.
    beta: the F_beta summary's beta.

  Returns:
    (B, 2) float32 replicates of (F_beta, F_1/beta).
  """
  n, m = logits_real.shape[0], logits_generated.shape[0]

  def one(k):
    kr, kg = jax.random.split(k)
    lr = logits_real[jax.random.randint(kr, (n,), 0, n)]
    lg = logits_generated[jax.random.randint(kg, (m,), 0, m)]
    curve = prd_lib.curve_from_scores(
        lr, lg, num_angles=num_angles, beta=beta)
    return jnp.stack([curve.f_beta, curve.f_inv_beta])

  return lax.map(one, jax.random.split(key, num_resamples))
