"""GEL class masses: mode dropping, imbalance, missing/extraneous modes.

`gel_mode_probabilities` sums the GEL weights (`gendiag.metrics.gel.gel`) of
the labelled rows by class:
  mode dropping / imbalance  H(m, r): Hellinger distance between the
                             one-sample class masses m of the real rows and
                             the real class mix r (0: the model covers every
                             class in the real proportions)
  recovery                   H(m, pi) against the generated class mix pi,
                             and H(m, gold) against uniform over the classes
                             the model generates (the notebook's Fig. 3a)
  missing / extraneous       two-sample masses of each class on the real
                             side (missing: << r_c) and the generated side
                             (extraneous: << pi_c)
  intra-class diversity      a two-sample GEL divergence per class between
                             its real and generated rows (gendiag's design;
                             the paper names the property, not a formula),
                             and the within-class effective sample size of
                             the one-sample weights
H(a, b) = sqrt(1 - sum_c sqrt(a_c b_c)) on normalised vectors (no 1/sqrt 2,
as in the reference).

References:
  Ravuri, Rey, Mohamed & Deisenroth, "Understanding Deep Generative Models
  with Generalized Empirical Likelihoods", CVPR 2023 (reference notebook:
  `make_mode_probs`, `hellinger_dist`).
"""

import dataclasses
import functools
from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.metrics.gel import dual as gel_dual
from gendiag.metrics.gel import moments as gm
from gendiag.metrics.gel import statistic as statistic_lib
from gendiag.ops import distances
from gendiag.ops import knn

HIGHEST = lax.Precision.HIGHEST


def hellinger(a: jax.Array, b: jax.Array) -> jax.Array:
  """sqrt(1 - sum sqrt(a b)) of the normalised, clipped (>= 0) vectors."""
  a, b = jnp.maximum(a, 0.0), jnp.maximum(b, 0.0)
  a, b = gm.normalise(a), gm.normalise(b)
  return jnp.sqrt(jnp.maximum(1.0 - jnp.sum(jnp.sqrt(a * b)), 0.0))


def nearest_neighbor_labels(real: jax.Array, generated: jax.Array, *,
                            real_labels: jax.Array, num_classes: int,
                            k: int = 5) -> jax.Array:
  """Labels of generated rows by a k-NN vote among the labelled real rows.

  The classifier used when a model's samples carry no labels (ties go to
  the smaller label). Blocked k-NN search (`gendiag.ops.knn.knn`).

  Args:
    real: (n, d) labelled real features.
    generated: (m, d) features to label.
    real_labels: (n,) integer labels in [0, num_classes).
    num_classes: number of classes.
    k: neighbours voting.

  Returns:
    (m,) int32 labels.
  """
  _, idx = knn.knn(generated, real, k=k)
  votes = jnp.sum(jax.nn.one_hot(jnp.asarray(real_labels)[idx], num_classes),
                  axis=1)
  return jnp.argmax(votes, axis=1).astype(jnp.int32)


@_results.result(static=("objective", "num_classes", "labels_source"))
class GELModeResult:
  """Class-level GEL diagnostics (see the module doc).

  Attributes:
    real_masses: (C,) one-sample GEL mass of each class of the real rows.
    real_proportions: (C,) class mix r of the real rows.
    generated_proportions: (C,) class mix pi of the generated labels.
    hellinger_to_real: H(masses, r): degree of mode dropping / imbalance.
    hellinger_to_generated: H(masses, pi): how well GEL recovers the mix.
    hellinger_to_gold: H(masses, uniform over classes with pi_c > 0).
    dropped: (C,) bool, masses_c < drop_threshold * r_c.
    two_sample_real_masses: (C,) real-side two-sample masses (missing: low).
    two_sample_generated_masses: (C,) generated-side masses (extraneous:
      low).
    class_ess: (C,) within-class effective sample size of the one-sample
      weights over the class count (1: the class is covered uniformly).
    class_divergence: (C,) two-sample GEL divergence between the real and
      generated rows of each class on its top principal moments
      (intra-class diversity); +inf when infeasible or when either side
      has fewer than 2 rows.
    class_status: (C,) solver status of each class's problem.
    one_sample_status, two_sample_status: solver statuses of the fits.
    one_sample_divergence, two_sample_divergence: their divergences.
    two_sample_statistic: 2 (m D(p) + n D(q)) (test it with `gel_test`).
    real_weights: (n,) one-sample weights of the real rows.
    two_sample_real_weights: (n,), two_sample_generated_weights: (m,).
    generated_labels: (m,) labels used for the generated rows.
    objective: 'el', 'et' or 'cue'.
    num_classes: C.
    labels_source: 'given' or 'knn' (`nearest_neighbor_labels`).
  """
  real_masses: jax.Array
  real_proportions: jax.Array
  generated_proportions: jax.Array
  hellinger_to_real: jax.Array
  hellinger_to_generated: jax.Array
  hellinger_to_gold: jax.Array
  dropped: jax.Array
  two_sample_real_masses: jax.Array
  two_sample_generated_masses: jax.Array
  class_ess: jax.Array
  class_divergence: jax.Array
  class_status: jax.Array
  one_sample_status: jax.Array
  two_sample_status: jax.Array
  one_sample_divergence: jax.Array
  two_sample_divergence: jax.Array
  two_sample_statistic: jax.Array
  real_weights: jax.Array
  two_sample_real_weights: jax.Array
  two_sample_generated_weights: jax.Array
  generated_labels: jax.Array
  objective: str
  num_classes: int
  labels_source: str


def _class_divergences(phi_real, phi_gen, real_labels, gen_labels,
                       num_classes, class_moments, objective, max_iterations,
                       tol):
  """Two-sample GEL per class on the top principal moments (vmapped)."""
  n = phi_real.shape[0]
  pooled = jnp.concatenate([phi_real, phi_gen])
  mean, white, _, _ = gm.whitening(pooled)
  k = min(class_moments, pooled.shape[1])
  psi = jnp.matmul(pooled - mean, white[:, -k:], precision=HIGHEST)
  labels = jnp.concatenate([real_labels, gen_labels])
  signs = jnp.where(jnp.arange(pooled.shape[0]) < n, -1.0, 1.0).astype(
      psi.dtype)

  def one_class(c):
    mask = labels == c
    sub_mean, sub_white, _, curvature = gm.whitening(psi, mask)
    z = jnp.matmul(psi - sub_mean, sub_white, precision=HIGHEST)
    z = jnp.concatenate([z, jnp.ones((z.shape[0], 1), z.dtype)], axis=1)
    diag = jnp.maximum(jnp.append(curvature, 1.0), 1e-3)
    sol = gm.solve(z, objective, max_iterations, tol, signs=signs, mask=mask,
                   diag=diag)
    _, _, div_q, div_p, _ = gm.split(sol, signs < 0, objective, mask)
    few = (jnp.sum(mask & (signs < 0)) < 2) | (jnp.sum(mask & (signs > 0)) < 2)
    status = jnp.where(few, gel_dual.INFEASIBLE, sol.status)
    return jnp.where(few, jnp.inf, div_q + div_p), status

  return jax.vmap(one_class)(jnp.arange(num_classes))


@functools.partial(jax.jit, static_argnames=statistic_lib.STATIC_ARGNAMES + (
    "num_classes", "class_moments"))
def modes_core(real, generated, real_labels, gen_labels, witnesses, kernel_obj,
               scale, drop_threshold, *, objective, moments, kernel,
               max_iterations, tol, block_size, num_classes, class_moments):
  """`gel_mode_probabilities` on checked arrays (witnesses given): jitted."""
  phi_real, phi_gen = statistic_lib.features(
      real, generated, witnesses, kernel_obj, scale, moments, kernel,
      block_size)
  one = statistic_lib.fit_one_sample(phi_real, phi_gen, objective,
                                     max_iterations, tol)
  two = statistic_lib.fit_two_sample(phi_real, phi_gen, objective,
                                     max_iterations, tol)
  by_class = lambda w, lab: jax.ops.segment_sum(w, lab, num_classes)
  n, m = real.shape[0], generated.shape[0]
  real_mix = by_class(jnp.full((n,), 1.0 / n, real.dtype), real_labels)
  gen_mix = by_class(jnp.full((m,), 1.0 / m, real.dtype), gen_labels)
  masses = by_class(one.real_weights, real_labels)
  gold = gm.normalise((gen_mix > 0).astype(real.dtype))
  counts = by_class(jnp.ones((n,), real.dtype), real_labels)
  class_ess = jnp.where(
      counts > 0,
      masses ** 2 / jnp.maximum(by_class(one.real_weights ** 2, real_labels),
                                jnp.finfo(real.dtype).tiny)
      / jnp.maximum(counts, 1.0), 0.0)
  class_div, class_status = _class_divergences(
      phi_real, phi_gen, real_labels, gen_labels, num_classes, class_moments,
      objective, max_iterations, tol)
  return GELModeResult(
      real_masses=masses, real_proportions=real_mix,
      generated_proportions=gen_mix,
      hellinger_to_real=hellinger(masses, real_mix),
      hellinger_to_generated=hellinger(masses, gen_mix),
      hellinger_to_gold=hellinger(masses, gold),
      dropped=masses < drop_threshold * real_mix,
      two_sample_real_masses=by_class(two.real_weights, real_labels),
      two_sample_generated_masses=by_class(two.generated_weights, gen_labels),
      class_ess=class_ess, class_divergence=class_div,
      class_status=class_status, one_sample_status=one.status,
      two_sample_status=two.status, one_sample_divergence=one.divergence,
      two_sample_divergence=two.divergence,
      two_sample_statistic=two.statistic, real_weights=one.real_weights,
      two_sample_real_weights=two.real_weights,
      two_sample_generated_weights=two.generated_weights,
      generated_labels=gen_labels, objective=objective,
      num_classes=num_classes, labels_source="given")


def gel_mode_probabilities(
    real: jax.Array, generated: jax.Array, *, real_labels,
    generated_labels=None, key: Optional[jax.Array] = None,
    num_classes: Optional[int] = None, objective: str = "et",
    moments: str = "kernel", witnesses: Optional[jax.Array] = None,
    num_witnesses: int = 256, kernel: gm.KernelSpec = "exponential",
    scale: float = 1.0, class_moments: int = 8, drop_threshold: float = 0.1,
    knn_k: int = 5, max_iterations: int = 100, tol: Optional[float] = None,
    block_size: int = distances.DEFAULT_BLOCK_SIZE) -> GELModeResult:
  """GEL class masses: which classes a model drops, under- or over-weights.

  Solves the one-sample problem (weights on the labelled real rows, the
  model's moment mean as target) and the two-sample problem, sums the
  weights by class and compares the masses with the real and generated
  class mixes (see the module doc for each metric). Generated labels come
  from the caller (e.g. a conditional model's class) or, if omitted, from a
  k-NN vote among the real rows (`nearest_neighbor_labels`).

  Inputs: array-likes and integer arrays are cast to float32; values
  beyond float32's safe range for squared distances and products,
  |x| > 7.2e16 / sqrt(d), raise ValueError.
  Labels must be integers 0..C-1, one per row, every class with real rows
  (gaps such as {0, 2, 5} raise ValueError: relabel them).

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    real_labels: (n,) integer labels of the real rows.
    generated_labels: optional (m,) labels of the generated rows.
    key: `jax.random` key for drawing witnesses (if `witnesses` is None).
    num_classes: C; default 1 + the largest label.
    objective: 'et' (default), 'el' or 'cue'.
    moments: 'kernel' (default) or 'raw'.
    witnesses: (J, d) witness points; default `num_witnesses` pooled rows.
    num_witnesses: J when witnesses are drawn.
    kernel: see `gendiag.metrics.gel.moments.moment_features`.
    scale: sigma of the exponential kernel.
    class_moments: principal moments per class problem.
    drop_threshold: a class is flagged dropped below this share of its real
      proportion.
    knn_k: neighbours of the fallback classifier.
    max_iterations: Newton steps per problem after 50 L-BFGS steps.
    tol: residual tolerance; default 1e-5 (float32), 1e-10 (float64).
    block_size: rows per block.

  Returns:
    A `GELModeResult`.

  References:
    Ravuri et al., CVPR 2023 (class masses, Hellinger to the gold mix; the
    reference notebook's `make_mode_probs` and `hellinger_dist`).
  """
  real, generated = statistic_lib.check_inputs(real, generated, objective,
                                               moments, kernel, max_iterations)
  _checks.check_positive_int(class_moments, "class_moments")
  _checks.check_positive_int(knn_k, "knn_k")
  real_labels = _checks.check_class_labels(
      real_labels, "real_labels", np.shape(real)[0], num_classes)
  if generated_labels is not None:
    generated_labels = _checks.check_class_labels(
        generated_labels, "generated_labels", np.shape(generated)[0],
        num_classes)
  if num_classes is None:
    top = [real_labels.max()] + (
        [] if generated_labels is None else [generated_labels.max()])
    num_classes = int(max(top)) + 1
  _checks.check_positive_int(num_classes, "num_classes", minimum=2)
  empty = np.flatnonzero(np.bincount(real_labels, minlength=num_classes) == 0)
  if empty.size:
    raise ValueError(
        f"classes {empty.tolist()[:10]} have no rows in `real_labels`; label "
        f"the classes 0..C-1 without gaps (e.g. np.unique(labels, "
        "return_inverse=True)[1]) or pass a smaller num_classes.")
  if generated_labels is None:
    source = "knn"
    generated_labels = nearest_neighbor_labels(
        real, generated, real_labels=real_labels, num_classes=num_classes,
        k=min(knn_k, np.shape(real)[0]))
  else:
    source = "given"
  w = statistic_lib.pick_witnesses(real, generated, moments, witnesses,
                                   num_witnesses, key)
  name, obj = statistic_lib.kernel_args(kernel)
  out = modes_core(real, generated, jnp.asarray(real_labels),
                   jnp.asarray(generated_labels), w, obj, scale,
                   drop_threshold, objective=objective, moments=moments,
                   kernel=name, max_iterations=max_iterations, tol=tol,
                   block_size=block_size, num_classes=num_classes,
                   class_moments=class_moments)
  return dataclasses.replace(out, labels_source=source)
