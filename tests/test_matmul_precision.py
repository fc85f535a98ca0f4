"""Every matrix product of the metrics and the report runs at Precision.HIGHEST.

TPU matmuls default to bf16 and Ampere/Hopper GPU ones to TF32: a Gram or
covariance product at the default precision loses 3 to 5 significant digits
(rounding the MMD permutation test's row sums to bf16 flipped the sign of
MMD^2 near the null). This audit runs every public function of
`gendiag.__all__` that takes arrays (and each kernel class, `mmd_bootstrap`,
`fid_bootstrap`, the MMD gradient and the biased estimators' branches), and
every report family of `gendiag.report.REGISTRY`, on tiny inputs, and fails
on any `dot_general` (matmul, `@`, einsum, `jnp.dot`, `tensordot`, flax
`Dense`...) whose precision is not HIGHEST for both operands.

How: the `dot_general` primitive's `bind` is wrapped to record the precision
of every product and the gendiag source lines it comes from, after
`jax.clear_caches()`, so every jitted function (and every scan, while, cond,
shard_map or custom_jvp body inside it) is traced again and binds its
products. Eager products bind the same way, and a transformation's
re-bind is reported at the line that was traced. The caches are cleared
once per module (cases share compilations, and several cases call the
functions as the families do so the families reuse them): a cache hit can
only repeat a product already recorded with the same precision, and each
low-precision product clears the caches again, so that a second call site
of the same shapes is traced and reported too.

Not audited: `gendiag.flows` (the flow models and their trainer, not
metrics); their Dense layers, like the CAS, probe and digits-network
classifiers' (which the families do run), use HIGHEST anyway.
"""

import inspect
import os
import traceback

import jax
from jax._src import source_info_util
from jax._src.lax import lax as lax_internal  # the dot_general primitive
import jax.numpy as jnp
import numpy as np
import pytest

import gendiag
from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.data.inputs import FrechetReference
from gendiag.metrics.gel import moments as gel_moments

_PACKAGE = os.path.dirname(os.path.abspath(gendiag.__file__))
_ROOT = os.path.dirname(_PACKAGE)
HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def _project_frames(frames):
  """'path:line in function' of this repository's frames (innermost first)
  inside the audited call."""
  out = []
  for file, line, name in frames:
    name = name.split(".")[-1]
    if name == "_low_precision_products":
      break
    if (os.path.abspath(file).startswith(_ROOT + os.sep)
        and "site-packages" not in file and not file.startswith("<")
        and name not in ("_location", "recording_bind")):
      out.append(f"{os.path.relpath(file, _ROOT)}:{line} in {name}")
  return out


def _location():
  """Where the product being bound comes from, innermost frame first.

  A transformation (vmap, grad) re-binds the equations of a jaxpr traced
  earlier; JAX then sets the traceback recorded at tracing as the current
  one, and that is reported as well.
  """
  here = _project_frames((f.filename, f.lineno, f.name)
                         for f in reversed(traceback.extract_stack()))
  traced = _project_frames(
      (f.file_name, f.start_line, f.function_name) for f in
      source_info_util.user_frames(source_info_util.current().traceback))
  where = " <- ".join(here) or "outside this repository"
  if traced and traced != here[:len(traced)]:
    return f"{' <- '.join(traced)} (traced there; re-bound from {where})"
  return where


@pytest.fixture(scope="module")
def products():
  """Records (precision, location) of every product bound in this module.

  The caches are cleared once, so each case traces every jitted function
  it is the first to call; a later case that hits the cache would only bind
  products already recorded with the same precision.
  """
  recorded = []
  bind = lax_internal.dot_general_p.bind

  def recording_bind(*args, **params):
    precision = params.get("precision")
    if precision == HIGHEST:
      recorded.append((precision, None))
    else:
      recorded.append((precision, _location()))
      # So that another call site of the same function, shapes and precision
      # (a cache hit: jnp.matmul is jitted) is traced, and reported, too.
      jax.clear_caches()
    return bind(*args, **params)

  assert jax.config.jax_default_matmul_precision is None
  jax.clear_caches()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(lax_internal.dot_general_p, "bind", recording_bind)
    yield recorded


def _low_precision_products(fn, recorded):
  """Runs fn(); the products it binds below HIGHEST, described."""
  first = len(recorded)
  fn()
  return sorted({f"precision={precision} at {where}"
                 for precision, where in recorded[first:]
                 if precision != HIGHEST})


def _data():
  rng = np.random.default_rng(0)
  centres = np.float32([[0, 0, 0], [3, 0, 0], [0, 3, 0]])
  labels = np.arange(36) % 3
  draw = lambda: np.float32(centres[labels] + rng.normal(size=(36, 3)))  # pylint: disable=g-long-lambda
  return draw(), draw(), draw(), draw(), labels


X, Y, TRAIN, TEST, LABELS = _data()
KEY = jax.random.key(0)
P = np.float32([0.1, 0.2, 0.3, 0.4])
Q = np.float32([0.25, 0.25, 0.25, 0.25])
KERNELS = (gendiag.Gaussian(1.5), gendiag.InverseMultiquadric(1.5),
           gendiag.Laplace(1.5), gendiag.Polynomial())


def _kernel_calls(kernel):
  return lambda: (kernel(X, Y), kernel.paired(X, Y),
                  jax.grad(lambda y: gendiag.mmd(X, y, kernel=kernel))(Y))


# One case per public function (name -> call on tiny inputs); more cases
# for the branches the issue named (biased estimators, bootstraps).
CASES = {
    "classification_accuracy_score": lambda: (
        gendiag.classification_accuracy_score(
            X, Y, real_labels=LABELS, generated_labels=LABELS, test=TEST,
            test_labels=LABELS, key=KEY,
            num_seeds=1, nas_fractions=(0.5,),
            recipe=gendiag.CASRecipe(hidden=(4,), steps=2, batch_size=8))),
    "fld": lambda: gendiag.fld(TRAIN, TEST, Y, key=KEY, max_epochs=2),
    "fld_baseline": lambda: gendiag.fld_baseline(TRAIN, TEST, key=KEY, size=20,
                                                 max_epochs=2),
    "cmmd": lambda: [gendiag.cmmd(X, Y, estimator=e)
                     for e in ("biased", "unbiased")],
    "cmmd_test": lambda: gendiag.cmmd_test(X, Y, key=KEY, num_permutations=3,
                                           num_resamples=2),
    "fid": lambda: gendiag.fid(X, Y),
    "fid_from_stats": lambda: gendiag.fid_from_stats(
        gendiag.frechet_stats(X), gendiag.frechet_stats(Y[:2])),
    "frechet_stats": lambda: gendiag.frechet_stats(X),
    "fid_standard_error": lambda: gendiag.fid_standard_error(X, Y),
    "fid_bootstrap": lambda: gendiag.fid_bootstrap(X, Y, key=KEY,
                                                   num_resamples=2),
    # The frontier calls are the frontiers family's (shared compilations).
    "classifier_frontier": lambda: gendiag.classifier_frontier(
        X, Y, key=KEY, num_steps=2, hidden_sizes=(), num_resamples=2),
    "divergence_frontier": lambda: gendiag.divergence_frontier(
        X, Y, key=KEY, num_clusters=3, num_restarts=1, max_iters=3,
        num_resamples=2),
    "frontier_integral": lambda: gendiag.frontier_integral(
        X, Y, key=KEY, num_clusters=3, num_restarts=1, max_iters=3),
    "mauve": lambda: gendiag.mauve(X, Y, key=KEY, num_clusters=3,
                                   num_restarts=1, max_iters=3),
    "divergence_frontier_from_histograms": lambda: (
        gendiag.divergence_frontier_from_histograms(P, Q, num_weights=5)),
    "frontier_integral_from_histograms": lambda: (
        gendiag.frontier_integral_from_histograms(P, Q)),
    "mauve_from_histograms": lambda: gendiag.mauve_from_histograms(
        P, Q, num_weights=5),
    # The GEL calls are the gel family's (same static arguments and shapes,
    # so the family reuses their compilations); the other moment features
    # (the solver is the same code) are traced by "gel_moment_features".
    "gel": lambda: gendiag.gel(X, Y, objective="et", kernel="gaussian",
                               witnesses=X[:4]),
    "gel_test": lambda: gendiag.gel_test(
        X, Y, key=KEY, objective="et", kernel="gaussian", witnesses=X[:4],
        num_permutations=2),
    "gel_mode_probabilities": lambda: gendiag.gel_mode_probabilities(
        X, Y, real_labels=LABELS, generated_labels=LABELS, num_classes=3,
        class_moments=2, drop_threshold=0.1, objective="et",
        kernel="gaussian", witnesses=X[:4]),
    "gel_moment_features": lambda: [gel_moments.moment_features(
        X, Y, moments=moments, witnesses=X[:4], kernel=kernel)
                                    for moments, kernel in (
                                        ("raw", "gaussian"),
                                        ("kernel", "exponential"),
                                        ("kernel", "imq"),
                                        ("kernel", "laplace"),
                                        ("kernel", gendiag.Gaussian(1.0)))],
    "auth_pct": lambda: gendiag.auth_pct(TRAIN, Y, key=KEY),
    "copy_flags": lambda: gendiag.copy_flags(TRAIN, Y),
    "data_copying_test": lambda: gendiag.data_copying_test(
        TRAIN, TEST, Y, key=KEY, num_cells=2, num_restarts=1,
        min_cell_samples=2),
    "inception_score": lambda: [gendiag.inception_score(X, convention=c)
                                for c in ("torch_fidelity", "improved_gan",
                                          "adm")],
    "kid": lambda: gendiag.kid(X, Y, key=KEY, num_subsets=2, subset_size=10),
    "mmd": lambda: [gendiag.mmd(X, Y, estimator=e)
                    for e in ("biased", "unbiased", "linear")],
    "mmd_gradient": lambda: jax.grad(lambda y: gendiag.mmd(X, y))(Y),
    "mmd_test": lambda: [gendiag.mmd_test(X, Y, key=KEY, num_permutations=3,
                                          estimator=e)
                         for e in ("biased", "unbiased")],
    "mmd_bootstrap": lambda: [gendiag.mmd_bootstrap(X, Y, key=KEY,
                                                    num_resamples=2,
                                                    estimator=e)
                              for e in ("biased", "unbiased")],
    "witness": lambda: gendiag.witness(X, Y, TEST),
    # As the precision_recall family calls them (shared compilations).
    "classifier_pr_curve": lambda: gendiag.classifier_pr_curve(
        X, Y, key=KEY, num_runs=2, num_steps=2, hidden_sizes=(),
        learning_rate=1e-2, weight_decay=1e-4),
    "prd": lambda: gendiag.prd(X, Y, key=KEY, num_clusters=3, num_runs=2),
    "improved_precision_recall": lambda: gendiag.improved_precision_recall(
        X, Y, k=(2, 3)),
    "prdc": lambda: gendiag.prdc(X, Y, k=(2, 3)),
    "manifold_radii": lambda: gendiag.manifold_radii(X, k=(2, 3)),
    "improved_pr_and_prdc": lambda: gendiag.improved_pr_and_prdc(
        X, Y, ipr_k=2, prdc_k=3,
        real_radii=gendiag.manifold_radii(X, k=(2, 3))),
    "median_heuristic": lambda: gendiag.median_heuristic(X, Y, max_points=50),
    "pr_curve": lambda: gendiag.pr_curve(P, Q, num_angles=5),
    "pr_divergence": lambda: gendiag.pr_divergence(P, Q, lam=0.5),
    **{type(k).__name__: _kernel_calls(k) for k in KERNELS},
}


def test_every_public_array_function_is_audited():
  public = {name for name in gendiag.__all__
            if inspect.isfunction(getattr(gendiag, name))}
  public |= {type(k).__name__ for k in KERNELS}
  assert public <= set(CASES), sorted(public - set(CASES))


@pytest.mark.parametrize("name", sorted(CASES))
def test_public_function_products_are_highest(name, products):
  bad = _low_precision_products(CASES[name], products)
  assert not bad, f"{name}: dot_general below HIGHEST:\n" + "\n".join(bad)


def _family_inputs():
  config = {
      "fid": {"num_resamples": 2},
      "image_scores": {"num_resamples": 2},
      "kid": {"num_subsets": 2, "subset_size": 10, "num_resamples": 2},
      "mmd": {"num_permutations": 3, "num_resamples": 2},
      "cmmd": {"num_permutations": 3, "num_resamples": 2},
      "precision_recall": {"prd_clusters": 3, "prd_runs": 2,
                           "classifier_runs": 2, "classifier_steps": 2,
                           "num_resamples": 2},
      "cas": {"num_seeds": 1, "hidden": (4,), "steps": 2, "batch_size": 8,
              "nas_fractions": (), "sample_grid": False},
      "fld": {"max_epochs": 2, "num_seeds": 1, "num_resamples": 2,
              "min_cell_samples": 2, "num_cells": 2},
      "gel": {"num_witnesses": 6, "num_permutations": 2, "class_moments": 2,
              "num_resamples": 2},
      "frontiers": {"num_clusters": 3, "num_restarts": 1, "max_iters": 3,
                    "num_resamples": 2, "classifier_steps": 2,
                    "null_splits": 1},
  }
  return EvalInputs(
      real=X, generated={"a": Y, "b": np.float32(Y * 0.5)},
      real_labels=LABELS, generated_labels={"a": LABELS, "b": LABELS},
      train=TRAIN, test=TEST, config=config,
      real_spatial=X, generated_spatial={"a": Y, "b": np.float32(Y * 0.5)},
      real_logits=X, generated_logits={"a": Y, "b": np.float32(Y * 0.5)},
      feature_family="clip",  # cmmd runs only on CLIP embeddings
      reference=FrechetReference(features=gendiag.frechet_stats(TEST),
                                 spatial=gendiag.frechet_stats(TEST)))


@pytest.mark.parametrize("family", sorted(report.REGISTRY))
def test_report_family_products_are_highest(family, products):
  inputs = _family_inputs()
  outputs = {}
  run = lambda: outputs.update(report.run_families(
      inputs, KEY, [family], registry=report.REGISTRY))  # pylint: disable=g-long-lambda
  bad = _low_precision_products(run, products)
  assert set(outputs[family].metrics) == {"a", "b"}, outputs[family].notes
  assert not bad, f"family {family}: dot_general below HIGHEST:\n" + "\n".join(
      bad)


def test_the_audit_sees_a_low_precision_product(products):
  """The recorder catches `@`, einsum and jnp.dot, eager, jitted, in scans."""
  def low():
    a = jnp.ones((3, 7))

    def body(c, _):
      g = c @ a.T
      return jnp.matmul(g, a), None

    jax.jit(lambda c: jax.lax.scan(body, c, length=2)[0])(a)
    jnp.einsum("ij,kj->ik", a, a)
    jnp.dot(a[0], a[0], precision=jax.lax.Precision.HIGH)
  bad = _low_precision_products(low, products)
  assert len(bad) == 4 and all("test_matmul_precision.py" in b for b in bad), (
      bad)
