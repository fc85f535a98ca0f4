"""The public API over bad inputs: a ValueError naming the fix, or the answer.

Every function of `gendiag.__all__` that takes feature arrays runs on small
inputs (40 x 4) of each input class:
  list, int      Python lists and integer arrays: the result on the same
                 values as a float32 array.
  big, tiny      values around 1e20 and 1e-20 (x * 2^66, x * 2^-66): the
                 scale-invariant metrics (k-NN, median-heuristic MMD, probes
                 that standardise, FLD) give exactly the unit-scale result
                 (a power-of-two rescaling is exact); the others raise a
                 ValueError saying to standardise (big) or give a finite
                 result (tiny; checked against float64 numpy where closed).
  nan, inf, empty, one_row, wrong_rank, mismatched_dim, strings, and k >= n
  and bad labels where the function has them: ValueError.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gendiag
from gendiag.metrics import cas_training

N, D = 40, 4
BIG, TINY = 2.0 ** 66, 2.0 ** -66   # ~7.4e19 and ~1.4e-20
KEY = jax.random.key(0)


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (rng.normal(size=(N, D)) + 0.5).astype(np.float32)
  return x, y


def _labels(n):
  return np.arange(n) % 2


def _scalars(*fields):
  return lambda r: {f: getattr(r, f) for f in fields}


def _identity(r):
  return {"value": r}


# name -> (call(x, y), scale-invariant?, summary(result): its scale-free
# outputs). Calls take two (n, d) sets; three-set functions split the first.
_CAS_RECIPE = cas_training.Recipe(hidden=(8,), steps=10, batch_size=16)


def _cas(x, y, real_labels=None):
  real_labels = _labels(len(x)) if real_labels is None else real_labels
  return gendiag.classification_accuracy_score(
      x, y, real_labels=real_labels, generated_labels=_labels(len(y)), test=x,
      test_labels=_labels(len(x)),
      key=KEY, num_seeds=1, top_k=1, nas_fractions=(1.0,),
      recipe=_CAS_RECIPE)


def _split3(x):
  return x[:len(x) // 2], x[len(x) // 2:]


CASES = {
    "mmd": (lambda x, y: gendiag.mmd(x, y), True, _identity),
    "mmd_kernel": (lambda x, y: gendiag.mmd(
        x, y, kernel=gendiag.Gaussian(2.0)), False, _identity),
    "mmd_test": (lambda x, y: gendiag.mmd_test(
        x, y, key=KEY, num_permutations=20), True,
                 _scalars("statistic", "p_value")),
    "kid": (lambda x, y: gendiag.kid(x, y, key=KEY, num_subsets=4,
                                     subset_size=10), False,
            _scalars("mean", "std")),
    "fid": (lambda x, y: gendiag.fid(x, y), False, _scalars("fid")),
    "frechet_stats": (lambda x, y: gendiag.frechet_stats(x), False,
                      _scalars("mean", "cov")),
    "witness": (lambda x, y: gendiag.witness(x, y, y[:5]), True, _identity),
    "median_heuristic": (lambda x, y: gendiag.median_heuristic(x, y), True,
                         _identity),
    "improved_precision_recall": (
        lambda x, y: gendiag.improved_precision_recall(x, y), True,
        _scalars("precision", "recall", "realism")),
    "prdc": (lambda x, y: gendiag.prdc(x, y), True,
             _scalars("precision", "recall", "density", "coverage")),
    "improved_pr_and_prdc": (
        lambda x, y: gendiag.improved_pr_and_prdc(x, y), True,
        lambda r: {"ipr_precision": r[0].precision, "ipr_recall": r[0].recall,
                   "density": r[1].density, "coverage": r[1].coverage}),
    "manifold_radii": (lambda x, y: gendiag.manifold_radii(x), True,
                       lambda r: {"value": r.radii}),
    "prd": (lambda x, y: gendiag.prd(x, y, key=KEY, num_clusters=4,
                                     num_runs=2, num_angles=11), True,
            _scalars("precision", "recall")),
    "classifier_pr_curve": (lambda x, y: gendiag.classifier_pr_curve(
        x, y, key=KEY, num_runs=2, num_angles=11, num_steps=10), True,
                            _scalars("precision", "recall")),
    "copy_flags": (lambda x, y: gendiag.copy_flags(x, y), True,
                   _scalars("ratio", "flagged")),
    "auth_pct": (lambda x, y: gendiag.auth_pct(x, y), True,
                 _scalars("auth_pct", "authentic")),
    "data_copying_test": (lambda x, y: gendiag.data_copying_test(
        *_split3(x), y, key=KEY, num_cells=2, num_restarts=2,
        min_cell_samples=2), True, _scalars("c_t", "cell_z")),
    "fld": (lambda x, y: gendiag.fld(*_split3(x), y, key=KEY, max_epochs=2),
            True, _scalars("fld", "gap")),
    "fld_baseline": (lambda x, y: gendiag.fld_baseline(
        *_split3(x), key=KEY, size=5, max_epochs=2), True, _scalars("nll")),
    "mauve": (lambda x, y: gendiag.mauve(x, y, key=KEY, num_clusters=4,
                                         num_weights=5), True,
              _scalars("mauve", "frontier_integral")),
    "classifier_frontier": (lambda x, y: gendiag.classifier_frontier(
        x, y, key=KEY, num_steps=10, num_weights=5), True,
                            _scalars("mauve", "frontier_integral")),
    "gel_test": (lambda x, y: gendiag.gel_test(
        x, y, key=KEY, num_witnesses=8, num_permutations=5,
        null_max_iterations=20, max_iterations=20), False,
                 _scalars("statistic")),
    "gel_mode_probabilities": (lambda x, y: gendiag.gel_mode_probabilities(
        x, y, real_labels=_labels(len(x)), key=KEY, num_witnesses=8,
        class_moments=2,
        max_iterations=20), False, _scalars("real_masses")),
    "classification_accuracy_score": (_cas, False,
                                      _scalars("cas", "real_cas")),
}

# Functions that accept a one-row `real` (witness: f at the points).
ONE_ROW_OK = {"witness", "median_heuristic", "mauve"}
# Functions of one feature set (or of train and test): `y` is not passed.
ONE_SET = {"frechet_stats", "fld_baseline", "manifold_radii"}
LABELLED = {"gel_mode_probabilities", "classification_accuracy_score"}


def _leaves(summary):
  return {k: np.asarray(v) for k, v in summary.items()}


def _assert_same(got, want, rtol=0.0):
  assert got.keys() == want.keys()
  for k in want:
    assert np.all(np.isfinite(got[k])), k
    tol = rtol if k == "realism" else 0.0
    np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=0, err_msg=k)


_REFERENCE = {}


def _reference(name, x, y):
  if name not in _REFERENCE:
    call, _, summary = CASES[name]
    _REFERENCE[name] = _leaves(summary(call(x, y)))
  return _REFERENCE[name]


INPUT_CLASSES = ("list", "int", "big", "tiny", "nan", "inf", "empty",
                 "one_row", "wrong_rank", "mismatched_dim", "strings")


@pytest.mark.parametrize("input_class", INPUT_CLASSES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_inputs(name, input_class):
  call, invariant, summary = CASES[name]
  x, y = _data()
  if input_class == "list":
    _assert_same(_leaves(summary(call(x.tolist(), y.tolist()))),
                 _reference(name, x, y))
  elif input_class == "int":
    xi, yi = (np.round(4 * a).astype(np.int32) for a in (x, y))
    want = _leaves(summary(call(xi.astype(np.float32), yi.astype(np.float32))))
    _assert_same(_leaves(summary(call(xi, yi))), want)
  elif input_class in ("big", "tiny"):
    c = BIG if input_class == "big" else TINY
    if invariant:
      got = summary(call(x * np.float32(c), y * np.float32(c)))
      if name in ("median_heuristic", "manifold_radii"):  # distances
        got = {"value": got["value"] / c}
      # Realism's 1e-5 guard is relative to max|x| on rescaled inputs.
      _assert_same(_leaves(got), _reference(name, x, y),
                   rtol=1e-3 if name == "improved_precision_recall" else 0)
    elif input_class == "big":
      with pytest.raises(ValueError, match="standardise"):
        call(x * np.float32(c), y * np.float32(c))
    else:  # tiny values, scale-dependent: the computed answer is finite
      got = _leaves(summary(call(x * np.float32(c), y * np.float32(c))))
      for k, v in got.items():
        assert np.all(np.isfinite(v)), k
  elif input_class in ("nan", "inf"):
    bad = x.copy()
    bad[3, 1] = np.nan if input_class == "nan" else np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
      call(bad, y)
    if name not in ONE_SET:
      with pytest.raises(ValueError, match="NaN or inf"):
        call(x, np.where(np.arange(N)[:, None] == 7, bad[3], y))
  elif input_class == "empty":
    with pytest.raises(ValueError):
      call(np.zeros((0, D), np.float32), y)
  elif input_class == "one_row":
    if name in ONE_ROW_OK:
      got = _leaves(summary(call(x[:1], y)))
      for k, v in got.items():
        assert np.all(np.isfinite(v)), k
    else:
      with pytest.raises(ValueError, match="samples|rows|at least"):
        call(x[:1], y)
  elif input_class == "wrong_rank":
    with pytest.raises(ValueError, match="shape"):
      call(x.reshape(N, 2, 2), y)
  elif input_class == "mismatched_dim" and name not in ONE_SET:
    with pytest.raises(ValueError, match="features|shape"):
      call(x, np.concatenate([y, y[:, :1]], axis=1))
  elif input_class == "strings":
    with pytest.raises(ValueError, match="numbers"):
      call(x.astype(str), y)


@pytest.mark.parametrize("name", ["improved_precision_recall", "prdc"])
def test_k_at_least_n(name):
  x, y = _data()
  fn = getattr(gendiag, name)
  with pytest.raises(ValueError, match="smaller k"):
    fn(x[:6], y[:6], k=5)
  with pytest.raises(ValueError, match="smaller k"):
    fn(x, y, k=N)


@pytest.mark.parametrize("name", ["improved_precision_recall", "prdc"])
@pytest.mark.parametrize("c", [BIG, TINY, 1e20, 1e-20])
def test_knn_radii_in_callers_units(name, c):
  """Radii come back in the caller's units: exactly c times the unit ones
  for a power of two c, within float32 rounding otherwise."""
  x, y = _data()
  fn = getattr(gendiag, name)
  want = fn(x, y)
  got = fn(x * np.float32(c), y * np.float32(c))
  for f in ("precision", "recall"):
    np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
  rtol = 0 if c in (BIG, TINY) else 1e-6
  np.testing.assert_allclose(np.asarray(got.real_radii) / c, want.real_radii,
                             rtol=rtol)


def test_copy_flags_distances_in_callers_units():
  x, y = _data()
  want = gendiag.copy_flags(x, y)
  got = gendiag.copy_flags(x * np.float32(BIG), y * np.float32(BIG))
  np.testing.assert_array_equal(np.asarray(got.distance) / BIG, want.distance)
  np.testing.assert_array_equal(got.train_index, want.train_index)


def _np_mmd2_unbiased(x, y, bandwidth):
  def k(a, b):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    return np.exp(-d / (2 * bandwidth ** 2))
  x, y = np.float64(x), np.float64(y)
  n, m = len(x), len(y)
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_tiny_values_fixed_kernel_match_float64():
  """With a fixed bandwidth, values ~1e-20 have MMD^2 ~1e-40: float32 gives
  0 (the kernel is 1 to float32 precision), as float64 does to 1e-30."""
  x, y = _data()
  c = 1e-20
  got = float(gendiag.mmd(x * np.float32(c), y * np.float32(c),
                          kernel=gendiag.Gaussian(2.0)))
  want = _np_mmd2_unbiased(x * c, y * c, 2.0)
  assert abs(got - want) < 1e-30
  stats = gendiag.fid(x * np.float32(c), y * np.float32(c))
  mu = np.float64(x).mean(0) - np.float64(y).mean(0)
  assert np.isfinite(float(stats.fid))
  assert abs(float(stats.fid)) < 1e-30 + 10 * float(mu @ mu) * c ** 2


def test_kid_polynomial_overflow_raises():
  """Inside check_range's bound the cubic kernel can still overflow float32
  (|x|^6): the non-finite KID is an error, not a NaN."""
  x, y = _data()
  with pytest.raises(ValueError, match="standardise"):
    gendiag.kid(x * 1e8, y * 1e8, key=KEY, num_subsets=2, subset_size=10)


@pytest.mark.parametrize("problem", ["length", "rank", "float", "negative",
                                     "gaps"])
@pytest.mark.parametrize("name", sorted(LABELLED))
def test_bad_labels(name, problem):
  x, y = _data()
  labels = _labels(N)
  bad = {"length": labels[:-1], "rank": labels.reshape(-1, 1),
         "float": labels + 0.5, "negative": labels - 1,
         "gaps": labels * 2}[problem]   # classes {0, 2}: class 1 empty
  match = {"length": "shape", "rank": "shape", "float": "integer",
           "negative": "negative|outside", "gaps": "empty|no rows"}[problem]
  with pytest.raises(ValueError, match=match):
    if name == "gel_mode_probabilities":
      gendiag.gel_mode_probabilities(x, y, real_labels=bad, key=KEY,
                                     num_witnesses=8)
    else:
      _cas(x, y, real_labels=bad)


@pytest.mark.parametrize("fn", ["pr_curve", "mauve_from_histograms",
                                "frontier_integral_from_histograms",
                                "divergence_frontier_from_histograms"])
def test_histogram_functions(fn):
  f = getattr(gendiag, fn)
  p, q = np.array([0.5, 0.25, 0.25], np.float32), np.array([0.25, 0.25, 0.5],
                                                           np.float32)
  want = jax.tree.leaves(f(p, q))
  got = jax.tree.leaves(f(p.tolist(), q.tolist()))
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)
  for bad_p in (np.array([2, 1, 1]), np.array([np.nan, 0.5, 0.5]),
                np.zeros((0,)), p[:2]):
    with pytest.raises(ValueError):
      f(bad_p, q)


def test_jax_and_float64_inputs_keep_working():
  """jax arrays, float64 numpy and jit-traced inputs take the same path."""
  x, y = _data()
  want = float(gendiag.mmd(x, y))
  assert float(gendiag.mmd(jnp.asarray(x), jnp.asarray(y))) == want
  np.testing.assert_allclose(float(gendiag.mmd(np.float64(x), np.float64(y))),
                             want, rtol=1e-6)
  np.testing.assert_allclose(float(jax.jit(gendiag.mmd)(x, y)), want,
                             rtol=1e-6)
  res = gendiag.prdc(jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.float16))
  assert np.isfinite(float(res.precision))
  assert dataclasses.is_dataclass(res)
