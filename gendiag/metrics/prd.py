"""Precision-recall curves from features: PRD (k-means) and classifier-based.

Both estimate the curve of Sajjadi et al. (2018) and Simon et al. (2019)

  alpha(lam) = int min(lam dP, dQ),   beta(lam) = alpha(lam) / lam,

(P real, Q model) on the grid lam = tan(theta), theta in (0, pi/2), and
summarise it by max F_8 (recall-like) and max F_1/8 (precision-like).

* `prd`: cluster the union of both sets with k-means, compare the two
  cluster histograms exactly (`pr_curves.pr_curve`), average over runs.
* `classifier_pr_curve`: alpha(lam) = min_A lam P(A) + Q(A^c) over sets A,
  and the sets {score < t} of a real-vs-generated classifier give the curve
  through its ROC: alpha_hat(lam) = min_t lam FNR(t) + FPR(t). A suboptimal
  classifier can only overestimate alpha (an optimistic curve); held-out
  scores keep it honest.
"""

import functools
from typing import Optional, Sequence

import jax
from jax import lax
import jax.numpy as jnp

from gendiag import _checks
from gendiag import _results
from gendiag.ops import pr_curves
from gendiag.ops import probe as probe_lib
from gendiag.ops import quantize


# --------------------------------------------------------------------------
# PRD: k-means histograms (Sajjadi et al. 2018).


@_results.result
class PRDResult:
  """A PRD curve averaged over k-means runs (Sajjadi et al. 2018).

  Attributes:
    precision: (num_angles,) alpha(lam), averaged over runs.
    recall: (num_angles,) beta(lam), averaged over runs.
    slopes: (num_angles,) lam = tan(theta).
    f_beta: max F_8 of the averaged curve (recall-like).
    f_inv_beta: max F_1/8 of the averaged curve (precision-like).
    real_histograms: (num_runs, num_clusters) cluster masses of the real set.
    generated_histograms: (num_runs, num_clusters) the same for the model.
    converged: (num_runs,) bool, whether each run's k-means converged
      before max_iters.
  """
  precision: jax.Array
  recall: jax.Array
  slopes: jax.Array
  f_beta: jax.Array
  f_inv_beta: jax.Array
  real_histograms: jax.Array
  generated_histograms: jax.Array
  converged: jax.Array


def prd(real: jax.Array, generated: jax.Array, *, key: jax.Array,
        num_clusters: int = 20, num_runs: int = 10, num_angles: int = 1001,
        beta: float = 8.0, num_restarts: int = 1, max_iters: int = 300,
        enforce_balance: bool = True) -> PRDResult:
  """PRD: the precision-recall curve of k-means cluster histograms.

  For each of `num_runs` runs (keys split from `key`), the union of both
  sets is clustered into `num_clusters` with k-means (`ops.quantize`); with
  p, q the fractions of real and generated rows in each cluster,

    alpha(lam) = sum_c min(lam p_c, q_c),  beta(lam) = alpha(lam) / lam

  on the angle grid; the curves are averaged over runs and summarised by max
  F_8 / F_1/8.

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact).

  Not a loss: the histograms count rows per k-means cluster, which are
  piecewise constant in the features, so the gradient is zero almost
  everywhere.

  Args:
    real: (N, D) real features.
    generated: (M, D) generated features.
    key: PRNG key for the k-means runs.
    num_clusters: clusters per run (20 in the reference).
    num_runs: independent clusterings averaged (10 in the reference).
    num_angles: points on the curve (1001 in the reference).
    beta: the F_beta summary's beta.
    num_restarts: k-means restarts per run (lowest inertia kept).
    max_iters: Lloyd iterations per restart at most.
    enforce_balance: require N == M, as the reference does (the clustering
      of the union is otherwise dominated by the larger set). Subsample the
      larger set, or pass False to accept the bias.

  Returns:
    PRDResult.

  References:
    Sajjadi, Bachem, Lucic, Bousquet, Gelly. Assessing Generative Models via
    Precision and Recall. NeurIPS 2018 (`prd_score.compute_prd_from_
    embedding`). The reference clusters with scikit-learn's MiniBatchKMeans
    (n_init=10, unseeded); here full-batch Lloyd with k-means++ and an
    explicit key, so runs are reproducible.
  """
  _checks.check_addressable("prd", real=real, generated=generated)
  _checks.check_positive_int(num_clusters, "num_clusters")
  _checks.check_positive_int(num_runs, "num_runs")
  real, generated = _checks.check_pair(real, generated, min_rows=num_clusters)
  (real, generated), _ = _checks.rescale(real, generated)  # scale-invariant
  n, m = jnp.shape(real)[0], jnp.shape(generated)[0]
  if enforce_balance and n != m:
    raise ValueError(
        f"`real` has {n} samples and `generated` {m}; PRD clusters their "
        "union, so unequal sizes bias it towards the larger set. Subsample "
        "the larger set to the same size, or pass enforce_balance=False.")
  return _prd(jnp.asarray(real), jnp.asarray(generated), key,
              num_clusters=num_clusters, num_runs=num_runs,
              num_angles=num_angles, beta=float(beta),
              num_restarts=num_restarts, max_iters=max_iters)


@functools.partial(jax.jit, static_argnames=(
    "num_clusters", "num_runs", "num_angles", "beta", "num_restarts",
    "max_iters"))
def _prd(real, generated, key, *, num_clusters, num_runs, num_angles, beta,
         num_restarts, max_iters):
  """`prd` after its checks, as one program.

  The runs go one after another (`lax.map`), not vmapped: a vmapped k-means
  loop iterates every run as long as the slowest one (42 against a median of
  21 iterations at 10k x 2048), which made the whole call ~15% slower.
  """
  n, m = real.shape[0], generated.shape[0]
  union = jnp.concatenate([real, generated])

  def run(k):
    fit = quantize.kmeans(union, key=k, num_clusters=num_clusters,
                          num_restarts=num_restarts, max_iters=max_iters)
    p = jnp.bincount(fit.labels[:n], length=num_clusters) / n
    q = jnp.bincount(fit.labels[n:], length=num_clusters) / m
    return p.astype(union.dtype), q.astype(union.dtype), fit.converged

  p, q, converged = lax.map(run, jax.random.split(key, num_runs))
  curves = jax.vmap(lambda a, b: pr_curves.pr_curve(a, b, num_angles=num_angles,
                                                    beta=beta))(p, q)
  curve = pr_curves.curve_from_precision(jnp.mean(curves.precision, axis=0),
                                         curves.slopes[0], beta=beta)
  # Average recall as the reference does (not alpha-bar / lam, identical
  # up to the clipping of each run's curve).
  recall = jnp.mean(curves.recall, axis=0)
  f_b, f_ib = pr_curves.max_f_beta(curve.precision, recall, beta=beta)
  return PRDResult(precision=curve.precision, recall=recall,
                   slopes=curve.slopes, f_beta=f_b, f_inv_beta=f_ib,
                   real_histograms=p, generated_histograms=q,
                   converged=converged)


# --------------------------------------------------------------------------
# Classifier-based curves (Simon, Webster & Rabin 2019).


def alpha_from_scores(scores_real, scores_generated, slopes):
  """min over thresholds t of lam FNR(t) + FPR(t), for each lam in slopes.

  FNR(t) = #{real < t} / N, FPR(t) = #{generated >= t} / M; t runs over every
  score and +inf, which covers every distinct (FNR, FPR) pair.
  """
  sr, sg = jnp.sort(scores_real), jnp.sort(scores_generated)
  t = jnp.concatenate([sr, sg, jnp.array([jnp.inf], sr.dtype)])
  n, m = sr.shape[0], sg.shape[0]
  # Exact integer counts first: XLA may turn "/ m" into "* (1/m)", and
  # 1 - count/m would then leave a residue of ~1e-8 where FPR is 0.
  fnr = jnp.searchsorted(sr, t, side="left").astype(sr.dtype) / n
  fpr = (m - jnp.searchsorted(sg, t, side="left")).astype(sr.dtype) / m
  return lax.map(lambda lam: jnp.min(lam * fnr + fpr), slopes, batch_size=64)


@functools.partial(jax.jit, static_argnames=("num_angles", "beta"))
def curve_from_scores(scores_real, scores_generated, num_angles, beta):
  """`pr_curve_from_scores` of checked arrays (jitted, vmap-safe)."""
  slopes = jnp.asarray(pr_curves.angle_slopes(num_angles), scores_real.dtype)
  alpha = alpha_from_scores(scores_real, scores_generated, slopes)
  return pr_curves.curve_from_precision(alpha, slopes, beta=beta)


def pr_curve_from_scores(scores_real: jax.Array, scores_generated: jax.Array,
                         *, num_angles: int = 1001,
                         beta: float = 8.0) -> pr_curves.PRCurve:
  """The PR curve of a real-vs-generated classifier's held-out scores.

  alpha(lam) = min_t lam FNR(t) + FPR(t), beta(lam) = alpha(lam) / lam, with
  FNR(t) = P(score < t | real) and FPR(t) = P(score >= t | generated). With
  Bayes-optimal scores (any increasing function of dP/dQ) this is the exact
  curve; any other score gives an upper bound on alpha.

  Args:
    scores_real: (N,) scores of real samples (higher = "more real").
    scores_generated: (M,) scores of generated samples.
    num_angles: points on the curve.
    beta: the F_beta summary's beta.

  Returns:
    pr_curves.PRCurve.

  References:
    Simon, Webster, Rabin. Revisiting Precision and Recall Definition for
    Generative Model Evaluation. ICML 2019 (`prd_score_classifier.py`:
    thresholds over all test scores, the 1001-angle grid of Sajjadi et al.).
  """
  for name, s in (("scores_real", scores_real),
                  ("scores_generated", scores_generated)):
    if jnp.ndim(s) != 1 or jnp.shape(s)[0] < 1:
      raise ValueError(f"`{name}` must be a non-empty 1-D array of scores; "
                       f"got shape {jnp.shape(s)}.")
  scores_real, scores_generated = (
      _checks.check_features(jnp.reshape(jnp.asarray(s), (-1, 1)), name)[:, 0]
      for s, name in ((scores_real, "scores_real"),
                      (scores_generated, "scores_generated")))
  return curve_from_scores(jnp.asarray(scores_real),
                           jnp.asarray(scores_generated),
                           num_angles=int(num_angles), beta=float(beta))


@_results.result
class ClassifierPRCurve:
  """A classifier-based PR curve (Simon et al. 2019).

  Attributes:
    precision: (num_angles,) alpha(lam).
    recall: (num_angles,) beta(lam) = alpha(lam) / lam.
    slopes: (num_angles,) lam = tan(theta).
    f_beta: max F_8, recall-like summary.
    f_inv_beta: max F_1/8, precision-like summary.
    logits_real: (N_test,) ensemble (median) log-odds of held-out real rows.
    logits_generated: (M_test,) the same for held-out generated rows.
    heldout_accuracy: () balanced accuracy of the ensemble at logit 0
      (0.5 = indistinguishable).
    train_loss: (num_runs,) each probe's final training cross-entropy.
    grad_norm: (num_runs,) each probe's final gradient norm (large = the
      step budget ended before convergence).
  """
  precision: jax.Array
  recall: jax.Array
  slopes: jax.Array
  f_beta: jax.Array
  f_inv_beta: jax.Array
  logits_real: jax.Array
  logits_generated: jax.Array
  heldout_accuracy: jax.Array
  train_loss: jax.Array
  grad_norm: jax.Array


def classifier_pr_curve(real: jax.Array, generated: jax.Array, *,
                        key: jax.Array, num_runs: int = 10,
                        test_fraction: float = 0.5, num_angles: int = 1001,
                        beta: float = 8.0, hidden_sizes: Sequence[int] = (),
                        num_steps: int = 500, learning_rate: float = 1e-2,
                        weight_decay: float = 1e-4,
                        batch_size: Optional[int] = None
                        ) -> ClassifierPRCurve:
  """PR curve from an ensemble of real-vs-generated probes on held-out data.

  Each set is split once (seeded); `num_runs` probes (`ops.probe`, vmapped
  over keys) are trained on the training parts, their held-out logits are
  combined by the median, and the curve is alpha(lam) = min_t lam FNR(t) +
  FPR(t) over thresholds t of the combined score.

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact).

  Not a loss: FNR and FPR count held-out rows on each side of a
  threshold, so the curve's gradient is zero almost everywhere.

  Args:
    real: (N, D) real features, N >= 4.
    generated: (M, D) generated features, M >= 4.
    key: PRNG key (split, initialisation, minibatches).
    num_runs: probes in the ensemble (10 in the reference code).
    test_fraction: fraction of each set held out for the curve.
    num_angles: points on the curve.
    beta: the F_beta summary's beta.
    hidden_sizes: probe hidden widths; () is a linear probe (the reference).
    num_steps, learning_rate, weight_decay, batch_size: `fit_probe`'s.

  Returns:
    ClassifierPRCurve.

  References:
    Simon, Webster, Rabin. Revisiting Precision and Recall Definition for
    Generative Model Evaluation. ICML 2019. The reference trains a bias-free
    linear layer with Adam for 10 epochs on a coin-flip split of equal-sized
    sets; here each set is split independently (sizes may differ) and the
    probe is standardised logistic regression or an MLP trained with AdamW.
    Label 1 = real, so FNR counts real samples called generated.
  """
  _checks.check_addressable("classifier_pr_curve", real=real, generated=generated)
  real, generated = _checks.check_pair(real, generated, min_rows=4)
  (real, generated), _ = _checks.rescale(real, generated)  # scale-invariant
  _checks.check_positive_int(num_runs, "num_runs")
  key_split, key_fit = jax.random.split(key)
  r_tr, r_te, g_tr, g_te = probe_lib.train_test_split(
      real, generated, key=key_split, test_fraction=test_fraction)

  lr, lg, accuracy, loss, gnorm = _probe_ensemble(
      r_tr, r_te, g_tr, g_te, jax.random.split(key_fit, num_runs),
      learning_rate, weight_decay,
      hidden_sizes=tuple(int(h) for h in hidden_sizes),
      num_steps=int(num_steps),
      batch_size=None if batch_size is None else int(batch_size))
  curve = curve_from_scores(lr, lg, num_angles=int(num_angles),
                            beta=float(beta))
  return ClassifierPRCurve(
      precision=curve.precision, recall=curve.recall, slopes=curve.slopes,
      f_beta=curve.f_beta, f_inv_beta=curve.f_inv_beta, logits_real=lr,
      logits_generated=lg, heldout_accuracy=accuracy, train_loss=loss,
      grad_norm=gnorm)


@functools.partial(jax.jit, static_argnames=("hidden_sizes", "num_steps",
                                             "batch_size"))
def _probe_ensemble(r_tr, r_te, g_tr, g_te, keys, learning_rate,
                    weight_decay, *, hidden_sizes, num_steps, batch_size):
  """Probes vmapped over keys; median held-out logits of real and generated.

  Returns:
    median logits (N_test,) and (M_test,), their balanced accuracy at 0,
    (R,) train losses, (R,) gradient norms.
  """
  def fit(k):
    probe = probe_lib.fit_probe(
        r_tr, g_tr, key=k, hidden_sizes=hidden_sizes, num_steps=num_steps,
        learning_rate=learning_rate, weight_decay=weight_decay,
        batch_size=batch_size)
    return (probe_lib.probe_logits(probe, r_te),
            probe_lib.probe_logits(probe, g_te), probe.train_loss,
            probe.grad_norm)

  lr, lg, loss, gnorm = jax.vmap(fit)(keys)
  lr, lg = jnp.median(lr, axis=0), jnp.median(lg, axis=0)
  accuracy = 0.5 * (jnp.mean(lr > 0) + jnp.mean(lg <= 0))
  return lr, lg, accuracy, loss, gnorm
