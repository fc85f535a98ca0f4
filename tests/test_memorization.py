"""Copy flags, AuthPct and C_T: reference values, float64 numpy, invariances."""

import json
import os

import jax
import numpy as np
import pytest

from gendiag.metrics import data_copying
from gendiag.metrics import memorization

DATA = os.path.join(os.path.dirname(__file__), "data")
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def fixture():
  arrays = np.load(os.path.join(DATA, "fld_inputs.npz"))
  with open(os.path.join(DATA, "fld_reference.json")) as f:
    ref = json.load(f)
  return arrays, ref


def _np_dist(a, b):
  a, b = np.float64(a), np.float64(b)
  return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _blobs(seed, n, d=6):
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(3, d)) * 4
  return np.float32(centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d)))


# --------------------------------------------------------------------------
# AuthPct.


@pytest.mark.parametrize("name", ["gen_good", "gen_copy", "gen_drop"])
def test_auth_pct_matches_reference_package(fixture, name):
  arrays, ref = fixture
  res = memorization.auth_pct(arrays["train"], arrays[name])
  want = ref["results"][name]["authpct"]
  assert abs(float(res.auth_pct) - want) < ref["tolerances"]["authpct_abs"]
  # Sets below 10k rows are used whole, so only round-off could differ.
  assert abs(float(res.auth_pct) - want) < 0.5


def test_auth_pct_matches_float64_numpy():
  train, gen = _blobs(0, 150), _blobs(1, 80)
  res = memorization.auth_pct(train, gen)
  tt = _np_dist(train, train)
  np.fill_diagonal(tt, np.inf)
  gt = _np_dist(gen, train)
  idx = gt.argmin(1)
  authentic = tt.min(1)[idx] < gt.min(1)
  np.testing.assert_array_equal(np.asarray(res.authentic), authentic)
  np.testing.assert_array_equal(np.asarray(res.train_index), idx)
  np.testing.assert_allclose(np.asarray(res.distance), gt.min(1), rtol=1e-5)
  np.testing.assert_allclose(float(res.auth_pct),
                             100 * authentic.mean() - 50, atol=1e-4)


def test_auth_pct_copies_scale_and_permutation():
  train, gen = _blobs(2, 120), _blobs(3, 60)
  copies = memorization.auth_pct(train, train[:40])
  assert float(copies.auth_pct) == -50.0
  np.testing.assert_array_equal(np.asarray(copies.distance), 0.0)
  a = memorization.auth_pct(train, gen)
  scaled = memorization.auth_pct(train * 7.5, gen * 7.5)
  assert float(scaled.auth_pct) == float(a.auth_pct)
  perm = np.random.default_rng(0).permutation(60)
  permuted = memorization.auth_pct(train, gen[perm])
  assert float(permuted.auth_pct) == float(a.auth_pct)
  np.testing.assert_array_equal(np.asarray(permuted.authentic),
                                np.asarray(a.authentic)[perm])


def test_auth_pct_subsamples_with_a_key():
  train, gen = _blobs(4, 90), _blobs(5, 70)
  with pytest.raises(ValueError, match="key"):
    memorization.auth_pct(train, gen, max_samples=50)
  res = memorization.auth_pct(train, gen, key=KEY, max_samples=50)
  assert res.authentic.shape == (50,)
  assert len(np.unique(np.asarray(res.generated_index))) == 50
  again = memorization.auth_pct(train, gen, key=KEY, max_samples=50)
  assert float(again.auth_pct) == float(res.auth_pct)


# --------------------------------------------------------------------------
# Copy flags.


def test_copy_flags_exact_and_near_copies(fixture):
  arrays, _ = fixture
  train, copy = arrays["train"], arrays["gen_copy"]
  flags = memorization.copy_flags(train, copy)
  # gen_copy = exact copies of train[:250], then 250 fresh samples.
  np.testing.assert_array_equal(np.asarray(flags.flagged),
                                np.arange(500) < 250)
  np.testing.assert_array_equal(np.asarray(flags.train_index[:250]),
                                np.arange(250))
  np.testing.assert_array_equal(np.asarray(flags.distance[:250]), 0.0)
  assert int(flags.num_flagged) == 250
  assert float(flags.fraction) == 0.5
  # Jitter at 5% of the typical nearest-neighbour distance: still copies.
  rng = np.random.default_rng(0)
  nn = float(np.median(np.asarray(flags.second_distance[250:])))
  near = train[:100] + np.float32(0.05 * nn / np.sqrt(train.shape[1])
                                  * rng.normal(size=(100, train.shape[1])))
  near_flags = memorization.copy_flags(train, near)
  assert bool(np.all(np.asarray(near_flags.flagged)))
  np.testing.assert_array_equal(np.asarray(near_flags.train_index),
                                np.arange(100))
  fresh = memorization.copy_flags(train, arrays["gen_good"])
  assert int(fresh.num_flagged) == 0


def test_copy_flags_match_float64_numpy():
  train, gen = _blobs(6, 130), _blobs(7, 50)
  gen[:5] = train[10:15] + 0.01
  res = memorization.copy_flags(train, gen, threshold=0.5)
  dist = _np_dist(gen, train)
  order = np.argsort(dist, axis=1)
  d1 = np.take_along_axis(dist, order[:, :1], 1)[:, 0]
  d2 = np.take_along_axis(dist, order[:, 1:2], 1)[:, 0]
  np.testing.assert_array_equal(np.asarray(res.train_index), order[:, 0])
  np.testing.assert_allclose(np.asarray(res.ratio), d1 / d2, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(res.flagged), d1 / d2 < 0.5)
  assert res.threshold == 0.5


def test_copy_flags_duplicate_training_points_and_scale():
  train = _blobs(8, 60)
  train[1] = train[0]
  res = memorization.copy_flags(train, train[:1])
  assert bool(res.flagged[0]) and float(res.ratio[0]) == 0.0
  assert int(res.train_index[0]) in (0, 1)
  gen = _blobs(9, 40)
  a = memorization.copy_flags(train, gen)
  b = memorization.copy_flags(train * 3.0, gen * 3.0)
  np.testing.assert_allclose(np.asarray(a.ratio), np.asarray(b.ratio),
                             rtol=1e-5)


def test_bad_inputs_raise():
  train, gen = _blobs(10, 30), _blobs(11, 20)
  with pytest.raises(ValueError, match="generated"):
    memorization.copy_flags(train, gen[:, :2])
  with pytest.raises(ValueError, match="train"):
    memorization.copy_flags(train[:1], gen)
  with pytest.raises(ValueError, match="threshold"):
    memorization.copy_flags(train, gen, threshold=0.0)
  with pytest.raises(ValueError, match="NaN"):
    memorization.auth_pct(train, np.where(gen > 2, np.inf, gen))
  with pytest.raises(ValueError, match="train"):
    memorization.auth_pct(train[:1], gen)
  with pytest.raises(ValueError, match="max_samples"):
    memorization.auth_pct(train, gen, max_samples=1)


# --------------------------------------------------------------------------
# The experiment binary's library side, smoke config end to end.


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_fld_memorization_experiment_smoke(tmp_path):
  from configs import fld_memorization as config_lib  # pylint: disable=g-import-not-at-top
  from gendiag.experiments import fld_memorization  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config("smoke")
  out = fld_memorization.run(config, str(tmp_path))
  for name in ("metrics.jsonl", "results.json", "report.md",
               "fld_memorization.png"):
    assert os.path.getsize(tmp_path / name) > 100
  m = out["models"]
  n = config.data.num_generated
  assert [m[f"copy_{f:g}"]["copies_flagged"] for f in (0, 0.5, 1)] == [
      0, n // 2, n]
  # The gap falls with copying and FLD rises; FID against the training set
  # rewards copying instead.
  assert m["copy_0"]["fld_gap"] > m["copy_0.5"]["fld_gap"] > m["copy_1"][
      "fld_gap"]
  assert m["copy_1"]["fld"] > m["copy_0.5"]["fld"] > m["copy_0"]["fld"]
  assert m["copy_1"]["fid_train"] < m["copy_0"]["fid_train"]
  assert m["noisy_copy_0.5"]["fld_gap"] < -20
  assert m["copy_1"]["auth_pct"] == -50
  assert m["dropped"]["recall"] < m["copy_0"]["recall"]
  lines = open(tmp_path / "metrics.jsonl").read().splitlines()
  assert len(lines) == len(m)


# --------------------------------------------------------------------------
# C_T.


def _reference_c_t(train, test, gen, train_cells, test_cells, gen_cells, k,
                   tau):
  """The reference's Zu / C_T (casey-meehan/data-copying via marcojira/fld)
  on given cells, with sklearn's nearest neighbours and scipy's U."""
  from scipy.stats import mannwhitneyu  # pylint: disable=g-import-not-at-top
  from sklearn.neighbors import NearestNeighbors  # pylint: disable=g-import-not-at-top
  zs = np.zeros(k)
  for c in range(k):
    t, p, q = (np.float64(a[cells == c]) for a, cells in (
        (train, train_cells), (test, test_cells), (gen, gen_cells)))
    if len(q) == 0:
      continue
    nn = NearestNeighbors(n_neighbors=1).fit(t)
    lq, lp = nn.kneighbors(q)[0][:, 0], nn.kneighbors(p)[0][:, 0]
    u = mannwhitneyu(lq, lp, alternative="less").statistic
    m, n = len(q), len(p)
    zs[c] = (u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12)
  q_m = np.bincount(gen_cells, minlength=k) / len(gen)
  p_n = np.bincount(test_cells, minlength=k) / len(test)
  used = q_m > tau
  return p_n[used] @ zs[used] / p_n[used].sum(), zs


def test_c_t_matches_reference_formula_on_the_same_cells():
  train, test, gen = _blobs(20, 300), _blobs(21, 150), _blobs(22, 120)
  gen[:30] = train[:30]                       # some copies
  res = data_copying.data_copying_test(train, test, gen, key=KEY)
  cells = [np.asarray(c) for c in (res.train_cells, res.test_cells,
                                   res.generated_cells)]
  want, zs = _reference_c_t(train, test, gen, *cells, k=3, tau=20 / len(gen))
  np.testing.assert_allclose(np.asarray(res.cell_z), zs, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(float(res.c_t), want, rtol=1e-4, atol=1e-4)
  # Three well-separated blobs: k-means finds them.
  assert len(np.unique(cells[0])) == 3 and bool(res.kmeans_converged)


def test_c_t_sign_for_copies_fresh_and_underfit():
  # Same shapes as the test above, so k-means and C_T compile once.
  train, test = _blobs(23, 300), _blobs(24, 150)
  fresh = data_copying.data_copying_test(train, test, _blobs(25, 120),
                                         key=KEY)
  copies = data_copying.data_copying_test(train, test, train[:120], key=KEY)
  rng = np.random.default_rng(0)
  noisy = _blobs(26, 120) + np.float32(rng.normal(size=(120, 6)))
  underfit = data_copying.data_copying_test(train, test, noisy, key=KEY)
  assert abs(float(fresh.c_t)) < 3.0
  assert float(copies.c_t) < -6.0
  assert float(underfit.c_t) > 3.0
  np.testing.assert_array_equal(np.asarray(copies.generated_distance), 0.0)


def test_c_t_projects_high_dimensions_and_validates():
  rng = np.random.default_rng(1)
  # 6-d blobs isometrically embedded in 8-d (orthonormal rows).
  lift = np.float32(np.linalg.qr(rng.normal(size=(8, 6)))[0].T)
  train, test, gen = (_blobs(s, n) @ lift for s, n in ((27, 300), (28, 150),
                                                       (29, 120)))
  res = data_copying.data_copying_test(train, test, gen, key=KEY, max_dim=6)
  flat = data_copying.data_copying_test(_blobs(27, 300), _blobs(28, 150),
                                        _blobs(29, 120), key=KEY)
  assert np.isfinite(float(res.c_t)) and abs(float(res.c_t)) < 3.0
  # PCA recovers the 6-d data up to an isometry: same cells, same C_T.
  np.testing.assert_array_equal(
      np.sort(np.bincount(np.asarray(res.train_cells), minlength=3)),
      np.sort(np.bincount(np.asarray(flat.train_cells), minlength=3)))
  np.testing.assert_allclose(float(res.c_t), float(flat.c_t), atol=1e-3)
  with pytest.raises(ValueError, match="no test"):
    data_copying.data_copying_test(train, test[:1], gen, key=KEY)
  with pytest.raises(ValueError, match="min_cell_samples"):
    data_copying.data_copying_test(train, test, gen[:15], key=KEY)
  with pytest.raises(ValueError, match="generated"):
    data_copying.data_copying_test(train, test, gen[:, :5], key=KEY)
