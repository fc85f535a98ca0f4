"""FLD: the reference package's outputs, a float64 numpy reference, invariances."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.metrics import fld as fld_lib
from gendiag.metrics.fld import fit as fld_fit
from gendiag.metrics.fld import metric as fld_metric
from gendiag.metrics.fld import mixture as fld_mixture

DATA = os.path.join(os.path.dirname(__file__), "data")
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def fixture():
  arrays = np.load(os.path.join(DATA, "fld_inputs.npz"))
  with open(os.path.join(DATA, "fld_reference.json")) as f:
    ref = json.load(f)
  return arrays, ref


@pytest.fixture(scope="module")
def fixture_results(fixture):
  arrays, _ = fixture
  return {name: fld_lib.fld(arrays["train"], arrays["test"], arrays[name],
                            key=KEY)
          for name in ("gen_good", "gen_copy", "gen_drop")}


def _mixture_sets(seed, n_train=200, n_test=100, n_gen=100, d=8, shift=0.0,
                  noise=0.0):
  """Train, test and generated draws of one 4-mode Gaussian mixture."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(123).normal(size=(4, d)) * 3.0

  def draw(n):
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))

  gen = draw(n_gen) + shift + noise * rng.normal(size=(n_gen, d))
  return (np.float32(draw(n_train)), np.float32(draw(n_test)),
          np.float32(gen))


# --------------------------------------------------------------------------
# Differential test against the reference package (marcojira/fld, ffbbf20).


@pytest.mark.parametrize("name", ["gen_good", "gen_drop"])
def test_matches_reference_package(fixture, fixture_results, name):
  _, ref = fixture
  tol, want = ref["tolerances"], ref["results"][name]
  res = fixture_results[name]
  assert abs(float(res.nll_test) - want["nll_test_per_dim"]) < tol[
      "nll_per_dim_abs"]
  assert abs(float(res.nll_train) - want["nll_train_per_dim"]) < tol[
      "nll_per_dim_abs"]
  assert abs(float(res.baseline_nll) - want["baseline_nll_per_dim"]) < tol[
      "nll_per_dim_abs"]
  assert abs(float(res.fld) - want["fld_test"]) < tol["fld_abs"]
  assert abs(float(res.gap) - want["fld_gap"]) < tol["gap_abs"]
  # The fit itself is deterministic given the data (one full batch), so the
  # fit's NLLs and its early stop agree far below the tolerances.
  assert abs(float(res.nll_test) - want["nll_test_per_dim"]) < 1e-4
  assert abs(float(res.nll_train) - want["nll_train_per_dim"]) < 1e-4
  assert int(res.num_iterations) == want["fit_epochs_run"]
  assert bool(res.converged)


def test_reference_copy_directions(fixture, fixture_results):
  _, ref = fixture
  good, copy = fixture_results["gen_good"], fixture_results["gen_copy"]
  assert float(copy.fld) > float(good.fld)
  assert float(copy.gap) < -100.0 < float(good.gap)
  # Only the train NLL differs from the reference (exact-copy distances are
  # 0 here, ~1e-4 there); the test NLL does not depend on it.
  want = ref["results"]["gen_copy"]
  assert abs(float(copy.nll_test) - want["nll_test_per_dim"]) < 0.01
  assert float(copy.nll_train) < want["nll_train_per_dim"]
  assert not bool(copy.converged)  # copies keep shrinking: 50 epochs
  assert int(copy.num_iterations) == want["fit_epochs_run"]


def test_copies_rank_first_and_collapse(fixture_results):
  copy = fixture_results["gen_copy"]
  scores = np.asarray(copy.memorization_scores)
  # gen_copy = 250 exact copies of train[:250], then 250 fresh samples.
  assert scores[:250].min() > scores[250:].max()          # AUROC = 1
  np.testing.assert_array_equal(np.asarray(copy.nearest_train_index[:250]),
                                np.arange(250))
  np.testing.assert_array_equal(np.asarray(copy.nearest_train_distance[:250]),
                                0.0)
  lv = np.asarray(copy.log_variances)
  assert lv[:250].max() < lv[250:].min() - 10.0


def test_baseline_size_and_sharing(fixture, fixture_results):
  arrays, _ = fixture
  base = fld_lib.fld_baseline(arrays["train"], arrays["test"], key=KEY,
                              size=500)
  assert base.centre_index.shape == (500,)
  assert len(np.unique(np.asarray(base.centre_index))) == 500
  shared = fld_lib.fld(arrays["train"], arrays["test"], arrays["gen_drop"],
                       key=KEY, baseline_nll=float(base.nll))
  full = fixture_results["gen_drop"]
  np.testing.assert_allclose(float(shared.nll_test), float(full.nll_test),
                             rtol=1e-6)
  np.testing.assert_allclose(float(shared.fld),
                             100 * (float(full.nll_test) - float(base.nll)),
                             atol=1e-3)
  assert int(shared.baseline_num_iterations) == -1
  # fld's own baseline is fld_baseline with the third of its key's splits.
  inner = fld_lib.fld_baseline(arrays["train"], arrays["test"],
                               key=jax.random.split(KEY, 3)[2], size=500)
  np.testing.assert_allclose(float(inner.nll), float(full.baseline_nll),
                             rtol=1e-6)
  assert fld_lib.default_baseline_size(2000, 500) == 500
  assert fld_lib.default_baseline_size(800, 500) == 400
  assert fld_lib.default_baseline_size(80_000, 50_000) == 10_000


# --------------------------------------------------------------------------
# A float64 numpy reference of the whole procedure (full batch).


def _np_fit(x, g, epochs, lr=0.5, init="nearest"):
  """Float64 Adam on the FLD objective, origin component, clamp."""
  n, d = x.shape
  n_comp = g.shape[0]
  d2 = ((x[:, None, :] - g[None, :, :]) ** 2).sum(-1)
  o2 = ((x - x.mean(0)) ** 2).sum(-1)
  lv = np.log((d2.min(0) + 1e-3) / d) if init == "nearest" else np.zeros(
      n_comp)
  theta = np.concatenate([lv, [0.0]])
  m = np.zeros_like(theta)
  v = np.zeros_like(theta)
  losses = []
  for t in range(1, epochs + 1):
    lv, lv0 = theta[:-1], theta[-1]
    a = -0.5 * d2 / np.exp(lv) - 0.5 * d * (lv + math.log(2 * math.pi)) \
        - math.log(n_comp)
    a0 = -0.5 * 0.81 * o2 / np.exp(lv0) - 0.5 * d * (lv0 + math.log(
        2 * math.pi))
    full = np.concatenate([a, a0[:, None]], axis=1)
    mx = full.max(1, keepdims=True)
    lse = (mx + np.log(np.exp(full - mx).sum(1, keepdims=True)))[:, 0]
    r = np.exp(full - lse[:, None])
    dfull = np.concatenate([0.5 * d2 / np.exp(lv) - 0.5 * d,
                            (0.5 * 0.81 * o2 / np.exp(lv0) - 0.5 * d)[:, None]],
                           axis=1)
    grad = -(r * dfull).sum(0) / (d * n)
    losses.append(-lse.mean() / d)
    m = 0.9 * m + 0.1 * grad
    v = 0.999 * v + 0.001 * grad ** 2
    mhat, vhat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
    theta = theta - lr * mhat / (np.sqrt(vhat) + 1e-8)
    theta[:-1] = np.clip(theta[:-1], -40, 40)
  return theta[:-1], np.array(losses)


def _np_nll(x, g, lv):
  d = x.shape[1]
  d2 = ((x[:, None, :] - g[None, :, :]) ** 2).sum(-1)
  a = -0.5 * d2 / np.exp(lv) - 0.5 * d * (lv + math.log(2 * math.pi))
  mx = a.max(1, keepdims=True)
  lse = (mx + np.log(np.exp(a - mx).sum(1, keepdims=True)))[:, 0]
  return -(lse - math.log(g.shape[0])) / d


def _np_standardised(train, test, gen):
  mean = test.astype(np.float64).mean(0)
  std = test.astype(np.float64).std(0, ddof=1)
  return [(a.astype(np.float64) - mean) / std for a in (train, test, gen)]


EPOCHS = 12


def test_matches_float64_numpy_reference():
  train, test, gen = _mixture_sets(1)
  res = fld_lib.fld(train, test, gen, key=KEY, max_epochs=EPOCHS, tol=0.0,
                    baseline_nll=0.0)
  tr, te, g = _np_standardised(train, test, gen)
  lv, losses = _np_fit(tr, g, EPOCHS)
  np.testing.assert_allclose(np.asarray(res.log_variances), lv, atol=2e-3)
  np.testing.assert_allclose(np.asarray(res.fit_losses), losses, atol=1e-4)
  np.testing.assert_allclose(float(res.nll_test), _np_nll(te, g, lv).mean(),
                             atol=1e-4)
  np.testing.assert_allclose(float(res.nll_train), _np_nll(tr, g, lv).mean(),
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(res.test_nlls), _np_nll(te, g, lv),
                             atol=1e-3)
  np.testing.assert_allclose(float(res.gap), 100 * (
      _np_nll(tr, g, lv).mean() - _np_nll(te, g, lv).mean()), atol=1e-2)
  d2 = ((tr[:, None] - g[None]) ** 2).sum(-1)
  scores = (-0.5 * d2.min(0) / np.exp(lv) - 0.5 * tr.shape[1] * (
      lv + math.log(2 * math.pi))) / tr.shape[1]
  np.testing.assert_allclose(np.asarray(res.memorization_scores), scores,
                             atol=1e-3)
  np.testing.assert_array_equal(np.asarray(res.nearest_train_index),
                                d2.argmin(0))

  base = fld_lib.fld_baseline(train, test, key=KEY, size=100,
                              max_epochs=EPOCHS, tol=0.0)
  idx = np.asarray(base.centre_index)
  rest = np.setdiff1d(np.arange(len(tr)), idx)
  blv, _ = _np_fit(tr[rest], tr[idx], EPOCHS)
  np.testing.assert_allclose(float(base.nll), _np_nll(te, tr[idx], blv).mean(),
                             atol=1e-4)


def test_closed_form_gradient_matches_autodiff():
  rng = np.random.default_rng(3)
  d2 = jnp.asarray(rng.uniform(0.5, 20.0, (16, 7)), jnp.float32)
  o2 = jnp.asarray(rng.uniform(1.0, 30.0, (16,)), jnp.float32)
  valid = jnp.arange(16) < 13
  lv = jnp.asarray(rng.normal(size=7), jnp.float32)
  lv0 = jnp.float32(0.3)
  dim = 5.0

  def loss(lv, lv0):
    w, c = fld_mixture.weights(lv, dim)
    w0 = 0.5 * fld_fit.ORIGIN_SCALE * jnp.exp(-lv0)
    c0 = -0.5 * dim * (lv0 + fld_mixture.LOG_2PI)
    ll, _, _, count = fld_fit.fit_block(d2, o2, valid, w, c, w0, c0, dim)
    return -ll / (dim * count)

  w, c = fld_mixture.weights(lv, dim)
  _, g, g0, count = fld_fit.fit_block(
      d2, o2, valid, w, c, 0.5 * fld_fit.ORIGIN_SCALE * jnp.exp(-lv0),
      -0.5 * dim * (lv0 + fld_mixture.LOG_2PI), dim)
  auto_lv, auto_lv0 = jax.jit(jax.grad(loss, argnums=(0, 1)))(lv, lv0)
  np.testing.assert_allclose(-g / (dim * count), auto_lv, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(-g0 / (dim * count), auto_lv0, rtol=1e-4,
                             atol=1e-6)


# --------------------------------------------------------------------------
# The fit.


def test_fit_increases_likelihood_monotonically_and_converges():
  train, test, gen = _mixture_sets(2)
  mean, std = test.mean(0), test.std(0, ddof=1)
  x, g = (train - mean) / std, (gen - mean) / std
  small = fld_lib.fit_bandwidths(x, g, key=KEY, lr=0.03)
  losses = np.asarray(small.losses)[:int(small.num_iterations)]
  assert bool(small.converged) and int(small.num_iterations) < 50
  assert np.all(np.diff(losses) <= 1e-6)          # NLL never goes up
  assert losses[-1] < losses[0] - 1e-3
  # The reference's lr = 0.5 overshoots in the first epochs (Adam is not a
  # descent method) but converges to the same optimum.
  ref = fld_lib.fit_bandwidths(x, g, key=KEY)
  ref_losses = np.asarray(ref.losses)[:int(ref.num_iterations)]
  assert bool(ref.converged)
  assert ref_losses[-1] < ref_losses[0]
  assert abs(ref_losses[-1] - losses[-1]) < 5e-3


def test_cache_batches_and_blocks_agree():
  train, test, gen = _mixture_sets(4)
  mean, std = test.mean(0), test.std(0, ddof=1)
  x, g = (train - mean) / std, (gen - mean) / std
  cached = fld_lib.fit_bandwidths(x, g, key=KEY)
  recomputed = fld_lib.fit_bandwidths(x, g, key=KEY, max_cache_bytes=0,
                                      block_size=64)
  np.testing.assert_allclose(np.asarray(recomputed.log_variances),
                             np.asarray(cached.log_variances), atol=1e-3)
  np.testing.assert_allclose(np.asarray(recomputed.losses),
                             np.asarray(cached.losses), atol=1e-5)
  assert int(recomputed.num_iterations) == int(cached.num_iterations)
  # Several Adam steps per epoch (batches of 64 rows, the last one short),
  # the distances recomputed in blocks of 32 rows each epoch.
  batched = fld_lib.fit_bandwidths(x, g, key=KEY, batch_size=64,
                                   block_size=32, max_cache_bytes=0)
  assert np.all(np.isfinite(np.asarray(batched.log_variances)))
  assert float(batched.losses[-1]) < float(batched.losses[0])
  assert abs(float(batched.losses[-1]) - float(cached.losses[-1])) < 0.05


def test_kernels_jit_matches_no_jit():
  rng = np.random.default_rng(13)
  x = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
  g = jnp.asarray(np.concatenate([rng.normal(size=(4, 3)), x[:2]]),
                  jnp.float32)
  jitted = jax.jit(fld_mixture.row_exact_sq_distances)(x, g)
  with jax.disable_jit():
    eager = fld_mixture.row_exact_sq_distances(x, g)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)
  assert float(jitted[0, 4]) == 0.0 and float(jitted[1, 5]) == 0.0
  np.testing.assert_allclose(jitted, ((np.float64(x)[:, None] - np.float64(
      g)[None]) ** 2).sum(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fit_jit_matches_no_jit():
  train, test, gen = _mixture_sets(5, n_train=40, n_test=30, n_gen=20, d=3)
  kwargs = dict(init="nearest", lr=0.5, max_epochs=2, batch_size=16,
                tol=5e-4, block_size=8, max_cache_bytes=0)
  args = (jnp.asarray(train), jnp.asarray(gen), KEY, jnp.float32(3))
  jitted, jitted_nll, jitted_rows = fld_fit.fit_jit(*args, **kwargs)
  with jax.disable_jit():
    eager, eager_nll_train, eager_rows = fld_fit.fit_jit(*args, **kwargs)
  np.testing.assert_allclose(float(jitted_nll), float(eager_nll_train),
                             rtol=1e-5)
  np.testing.assert_allclose(jitted_rows, eager_rows, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(jitted.log_variances),
                             np.asarray(eager.log_variances), atol=1e-4)
  np.testing.assert_allclose(np.asarray(jitted.losses),
                             np.asarray(eager.losses), atol=1e-5)
  lv = jitted.log_variances
  with jax.disable_jit():
    eager_nll = fld_lib.mixture_nll(test, gen, lv, block_size=8)
  np.testing.assert_allclose(fld_lib.mixture_nll(test, gen, lv, block_size=8),
                             eager_nll, rtol=1e-5)


# --------------------------------------------------------------------------
# Behaviour.


def test_held_out_real_beats_shifted_and_noisy():
  train, test, good = _mixture_sets(6)
  _, _, shifted = _mixture_sets(6, shift=1.0)
  _, _, noisy = _mixture_sets(6, noise=1.0)
  base = fld_lib.fld_baseline(train, test, key=KEY, size=100)
  c = float(base.nll)
  scores = {name: fld_lib.fld(train, test, gen, key=KEY, baseline_nll=c)
            for name, gen in [("good", good), ("shifted", shifted),
                              ("noisy", noisy)]}
  assert float(scores["good"].fld) < float(scores["shifted"].fld)
  assert float(scores["good"].fld) < float(scores["noisy"].fld)
  assert abs(float(scores["good"].fld)) < 5.0
  for res in scores.values():       # no memorisation: gap about 0
    assert abs(float(res.gap)) < 10.0


def test_invariant_to_permuting_generated():
  train, test, gen = _mixture_sets(7)
  perm = np.random.default_rng(0).permutation(len(gen))
  a = fld_lib.fld(train, test, gen, key=KEY, baseline_nll=1.0)
  b = fld_lib.fld(train, test, gen[perm], key=KEY, baseline_nll=1.0)
  np.testing.assert_allclose(float(a.fld), float(b.fld), atol=1e-4)
  np.testing.assert_allclose(float(a.gap), float(b.gap), atol=1e-4)
  np.testing.assert_allclose(np.asarray(b.log_variances),
                             np.asarray(a.log_variances)[perm], atol=1e-4)
  np.testing.assert_allclose(np.asarray(b.memorization_scores),
                             np.asarray(a.memorization_scores)[perm],
                             atol=1e-4)


def test_invariant_to_joint_per_feature_affine_map():
  train, test, gen = _mixture_sets(8)
  scale = np.float32(np.random.default_rng(1).uniform(0.1, 10.0, 8))
  offset = np.float32(np.random.default_rng(2).normal(size=8) * 5)
  affine = lambda x: x * scale + offset
  a = fld_lib.fld(train, test, gen, key=KEY, baseline_nll=1.0)
  b = fld_lib.fld(affine(train), affine(test), affine(gen), key=KEY,
                  baseline_nll=1.0)
  np.testing.assert_allclose(float(a.fld), float(b.fld), atol=5e-3)
  np.testing.assert_allclose(float(a.gap), float(b.gap), atol=5e-3)
  base_a = fld_lib.fld_baseline(train, test, key=KEY, size=100)
  base_b = fld_lib.fld_baseline(affine(train), affine(test), key=KEY,
                                size=100)
  np.testing.assert_allclose(float(base_a.nll), float(base_b.nll), atol=5e-5)


def test_constant_test_dimension_is_dropped():
  train, test, gen = _mixture_sets(9)
  for x in (train, test, gen):
    x[:, 3] = 2.5
  res = fld_lib.fld(train, test, gen, key=KEY, max_epochs=EPOCHS, tol=0.0,
                    baseline_nll=0.0)
  assert int(res.num_dims) == 7
  keep = [0, 1, 2, 4, 5, 6, 7]
  tr, te, g = _np_standardised(train[:, keep], test[:, keep], gen[:, keep])
  lv, _ = _np_fit(tr, g, EPOCHS)
  np.testing.assert_allclose(float(res.nll_test), _np_nll(te, g, lv).mean(),
                             atol=1e-4)
  with pytest.raises(ValueError, match="zero variance in every dimension"):
    fld_lib.fld(train, np.ones_like(test), gen, key=KEY)


def test_generated_cap_and_far_away_features():
  train, test, gen = _mixture_sets(10)
  _, _, gen_s, idx, dim = fld_metric.prepare(train, test, gen, KEY,
                                             max_generated=60)
  idx = np.asarray(idx)
  assert idx.shape == (60,) and len(np.unique(idx)) == 60
  mean, std = test.mean(0), test.std(0, ddof=1)
  np.testing.assert_allclose(gen_s, (gen[idx] - mean) / std, rtol=1e-4,
                             atol=1e-5)
  assert float(dim) == 8
  far = fld_lib.fld(train, test, gen + 1e4, key=KEY, baseline_nll=1.0)
  assert not np.isnan(float(far.fld)) and float(far.fld) > 100
  assert not np.isnan(float(far.gap))


def test_mixture_nll_differentiable_and_vmaps():
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(10, 4)), jnp.float32)
  lv = jnp.zeros(10)
  nll = fld_lib.mixture_nll(x, g, lv)
  ref = _np_nll(np.float64(x), np.float64(g), np.zeros(10))
  np.testing.assert_allclose(nll, ref, rtol=1e-5)
  grad = jax.jit(jax.grad(lambda v: jnp.mean(fld_lib.mixture_nll(x, g, v))))(
      lv)
  eps = 1e-3
  e0 = jnp.zeros(10).at[0].set(eps)
  fd = (jnp.mean(fld_lib.mixture_nll(x, g, lv + e0))
        - jnp.mean(fld_lib.mixture_nll(x, g, lv - e0))) / (2 * eps)
  np.testing.assert_allclose(grad[0], fd, rtol=1e-2)
  batched = jax.jit(jax.vmap(lambda v: fld_lib.mixture_nll(x, g, v)))(
      jnp.stack([lv, lv + 1.0]))
  np.testing.assert_allclose(batched[1], fld_lib.mixture_nll(x, g, lv + 1.0),
                             rtol=1e-6)


def test_bad_inputs_raise():
  train, test, gen = _mixture_sets(12, n_train=20, n_test=10, n_gen=10)
  with pytest.raises(ValueError, match="generated"):
    fld_lib.fld(train, test, gen[:, :3], key=KEY)
  with pytest.raises(ValueError, match="test"):
    fld_lib.fld(train, test[:, :3], gen, key=KEY)
  with pytest.raises(ValueError, match="test"):
    fld_lib.fld(train, test[:1], gen, key=KEY)
  with pytest.raises(ValueError, match="train"):
    fld_lib.fld(train[:1], test, gen, key=KEY)
  with pytest.raises(ValueError, match="NaN"):
    fld_lib.fld(train, test, np.where(gen > 1, np.nan, gen), key=KEY)
  with pytest.raises(ValueError, match="2-D"):
    fld_lib.fld(train, test, gen[0], key=KEY)
  with pytest.raises(ValueError, match="init"):
    fld_lib.fld(train, test, gen, key=KEY, init="zeros")
  with pytest.raises(ValueError, match="baseline_size"):
    fld_lib.fld(train, test, gen, key=KEY, baseline_size=20)
  with pytest.raises(ValueError, match="max_epochs"):
    fld_lib.fld(train, test, gen, key=KEY, max_epochs=0)
  with pytest.raises(ValueError, match="size"):
    fld_lib.fld_baseline(train, test, key=KEY, size=0)
  with pytest.raises(ValueError, match="log_variances"):
    fld_lib.mixture_nll(train, gen, jnp.zeros(3))


# --------------------------------------------------------------------------
# The report family.


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_report_family_flags_the_memorizing_model():
  from gendiag.data.inputs import EvalInputs  # pylint: disable=g-import-not-at-top
  from gendiag.report.families import fld as fld_family  # pylint: disable=g-import-not-at-top
  train, real_half, good = _mixture_sets(20)
  _, other_half, _ = _mixture_sets(21)
  real = np.empty((200, 8), np.float32)
  real[::2], real[1::2] = real_half, other_half
  memorized = good.copy()
  memorized[:50] = train[10:60]
  inputs = EvalInputs(real=real, generated={
      "good": good, "memorized": memorized}, train=train)
  out = fld_family.fld_family(inputs, KEY)
  good_m, mem_m = out.metrics["good"], out.metrics["memorized"]
  assert good_m["copies"]["value"] == 0 and mem_m["copies"]["value"] == 50
  assert mem_m["fld_gap"]["value"] < -20 < good_m["fld_gap"]["value"]
  assert good_m["fld"]["baseline_size"] == 100
  assert mem_m["auth_pct"]["value"] < good_m["auth_pct"]["value"]
  assert any("copy training samples" in f for f in out.findings["memorized"])
  assert not any("copy" in f for f in out.findings.get("good", []))
  assert any("even rows" in n for n in out.notes)
  section = "\n".join(out.sections)
  assert "**memorized**: 50 of 100" in section and "**good**" not in section
  assert "fld.png" in out.figures
  # The test half is exactly the even rows: same numbers as calling fld.
  direct = fld_lib.fld(train, real_half, good,
                       key=jax.random.split(jax.random.fold_in(
                           jax.random.split(KEY)[1], 0), 3)[0],
                       baseline_nll=good_m["fld"]["baseline_nll"])
  np.testing.assert_allclose(good_m["fld"]["value"], float(direct.fld),
                             atol=1e-3)


@pytest.mark.slow
def test_fld_under_jit_and_vmap_over_keys():
  train, test, gen = _mixture_sets(3, n_train=60, n_test=30, n_gen=20, d=4)
  keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
  direct = [float(fld_lib.fld(train, test, gen, key=k).fld) for k in keys]
  batched = jax.vmap(lambda k: fld_lib.fld(train, test, gen, key=k).fld)(keys)
  jitted = jax.jit(lambda k: fld_lib.fld(train, test, gen, key=k).fld)(
      keys[0])
  np.testing.assert_allclose(batched, direct, atol=1e-3)
  np.testing.assert_allclose(float(jitted), direct[0], atol=1e-3)


def test_fit_uses_key_exactly_when_a_key_changes_the_fit():
  train, test, gen = _mixture_sets(4, n_train=60, n_test=30, n_gen=20, d=4)
  run = lambda key, **kw: fld_lib.fld(train, test, gen, key=jax.random.key(
      key), baseline_nll=0.0, max_epochs=8, **kw)
  # One Adam batch, no cap: every key gives bitwise the same fit.
  assert not fld_lib.fit_uses_key(60, 20, max_generated=20, batch_size=60)
  a, b = run(0, max_generated=20), run(1, max_generated=20)
  assert float(a.gap) == float(b.gap) and float(a.fld) == float(b.fld)
  np.testing.assert_array_equal(a.log_variances, b.log_variances)
  # A cap on the generated set: the key draws the subset.
  assert fld_lib.fit_uses_key(60, 20, max_generated=15, batch_size=60)
  assert float(run(0, max_generated=15).gap) != float(
      run(1, max_generated=15).gap)
  # Several batches: the key sets the row order.
  assert fld_lib.fit_uses_key(60, 20, max_generated=20, batch_size=25)
  assert float(run(0, max_generated=20, batch_size=25).gap) != float(
      run(1, max_generated=20, batch_size=25).gap)
