"""The fld family's shared pieces give the results of the searches they replace.

C_T with a projection fitted once, AuthPct with the training set's
nearest-neighbour distances and the copy flags' search passed in, and the
per-row training NLLs of FLD's fit, each against the path that recomputes
them, on small sets with exact copies (and duplicated training rows, so
ties and zero distances occur).
"""

import jax
import numpy as np
import pytest

from gendiag.metrics import data_copying
from gendiag.metrics import fld as fld_lib
from gendiag.metrics import memorization
from gendiag.ops import knn

KEY = jax.random.key(0)


def _sets(seed, n_train=300, n_test=150, n_gen=120, d=8):
  """Blobs with exact copies in gen and a duplicated training row."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(3, d)) * 4
  draw = lambda n: np.float32(centres[rng.integers(0, 3, n)]
                              + rng.normal(size=(n, d)))
  train, test, gen = draw(n_train), draw(n_test), draw(n_gen)
  train[1] = train[0]                       # a tie at distance 0
  gen[:30] = train[:30]                     # exact copies (one of a pair)
  gen[30:40] = train[40:50] + np.float32(1e-3)   # near copies
  return train, test, gen


def _assert_same(a, b):
  for name, value in a.to_dict().items():
    np.testing.assert_array_equal(value, b.to_dict()[name], err_msg=name)


# --------------------------------------------------------------------------
# C_T: one PCA of the training set.


def test_c_t_with_a_shared_projection_is_the_refit():
  train, test, gen = _sets(1)
  proj = data_copying.train_projection(train, max_dim=6)
  assert proj.components.shape == (8, 6)
  for seed in (0, 1):
    key = jax.random.key(seed)
    own = data_copying.data_copying_test(train, test, gen, key=key, max_dim=6)
    shared = data_copying.data_copying_test(train, test, gen, key=key,
                                            max_dim=6, projection=proj)
    _assert_same(shared, own)
  assert float(own.c_t) < -2.0               # the copies are seen
  # No projection at or below max_dim: None, and the test does not project.
  assert data_copying.train_projection(train, max_dim=8) is None
  assert data_copying.train_projection(train, max_dim=None) is None
  with pytest.raises(ValueError, match="projection"):
    data_copying.data_copying_test(
        train[:, :7], test[:, :7], gen[:, :7], key=KEY, projection=proj)


def test_c_t_shared_projection_of_rescaled_sets():
  train, test, gen = (a * np.float32(1e20) for a in _sets(2))
  proj = data_copying.train_projection(train, max_dim=6)
  own = data_copying.data_copying_test(train, test, gen, key=KEY, max_dim=6)
  shared = data_copying.data_copying_test(train, test, gen, key=KEY,
                                          projection=proj)
  np.testing.assert_array_equal(shared.train_cells, own.train_cells)
  np.testing.assert_allclose(float(shared.c_t), float(own.c_t), atol=1e-5)
  np.testing.assert_allclose(shared.generated_distance, own.generated_distance,
                             rtol=1e-4)


# --------------------------------------------------------------------------
# Copy flags and AuthPct: one search each.


@pytest.mark.parametrize("block_size", [1024, 32])
def test_shared_searches_give_the_same_flags_and_auth_pct(block_size):
  train, _, gen = _sets(3)
  neighbours = memorization.nearest_train(train, gen, k=2,
                                          block_size=block_size)
  train_nn = memorization.train_nn_distance(train, block_size=block_size)
  own = memorization.copy_flags(train, gen, block_size=block_size)
  shared = memorization.copy_flags(train, gen, block_size=block_size,
                                   neighbours=neighbours)
  _assert_same(shared, own)
  assert int(own.num_flagged) >= 40         # exact and near copies fire
  # The k = 2 search's first column is the k = 1 search AuthPct runs.
  _, nn1 = knn.knn(np.float32(gen), np.float32(train), k=1,
                   block_size=block_size)
  np.testing.assert_array_equal(neighbours[:, :1], nn1)
  own = memorization.auth_pct(train, gen, block_size=block_size)
  for kw in (dict(train_nn_distance=train_nn), dict(neighbours=neighbours),
             dict(train_nn_distance=train_nn, neighbours=neighbours[:, :1])):
    _assert_same(memorization.auth_pct(train, gen, block_size=block_size,
                                       **kw), own)
  assert float(own.auth_pct) < 0.0
  # train_nn_distance is the nearest *other* row: the duplicate is at 0.
  assert float(train_nn[0]) == 0.0 == float(train_nn[1])


def test_shared_auth_pct_terms_of_rescaled_sets():
  train, _, gen = (a * np.float32(1e-20) for a in _sets(4))
  gen[-1] *= 64                                # another scale than train's
  own = memorization.auth_pct(train, gen)
  shared = memorization.auth_pct(
      train, gen, train_nn_distance=memorization.train_nn_distance(train),
      neighbours=memorization.nearest_train(train, gen))
  _assert_same(shared, own)


def test_shared_auth_pct_terms_need_every_row():
  train, _, gen = _sets(5)
  train_nn = memorization.train_nn_distance(train)
  neighbours = memorization.nearest_train(train, gen)
  with pytest.raises(ValueError, match="train_nn_distance"):
    memorization.auth_pct(train, gen, key=KEY, max_samples=200,
                          train_nn_distance=train_nn)
  with pytest.raises(ValueError, match="neighbours"):   # gen subsampled
    memorization.auth_pct(train, gen, key=KEY, max_samples=100,
                          neighbours=neighbours)
  with pytest.raises(ValueError, match="train_nn_distance"):
    memorization.auth_pct(train, gen, train_nn_distance=train_nn[:-1])
  with pytest.raises(ValueError, match="neighbours"):
    memorization.copy_flags(train, gen, neighbours=neighbours[:, :1])
  with pytest.raises(ValueError, match="neighbours"):
    memorization.auth_pct(train, gen, neighbours=neighbours[:-1])
  with pytest.raises(ValueError, match="outside"):
    memorization.copy_flags(train, gen, neighbours=neighbours + 300)
  with pytest.raises(ValueError, match="exceeds"):
    memorization.nearest_train(train[:5], gen, k=6)


# --------------------------------------------------------------------------
# FLD: the training rows' NLLs come out of the fit.


def _standardised(train, test, gen, res, dtype):
  """Train and the centres standardised by test (float64 statistics)."""
  t = np.asarray(test, np.float64)
  mean, std = t.mean(axis=0), t.std(axis=0, ddof=1)
  keep = std > 1e-6 * np.maximum(np.abs(mean), 1e-30)
  f = lambda x: dtype((np.asarray(x, np.float64)[:, keep] - mean[keep])
                      / std[keep])
  return f(train), f(np.asarray(gen)[np.asarray(res.generated_index)])


def _recomputed_train_nlls(train, test, gen, res):
  """The family's former `train_nlls`: every train x centre distance again."""
  return np.asarray(fld_lib.mixture_nll(
      *_standardised(train, test, gen, res, np.float32), res.log_variances))


def _float64_train_nlls(train, test, gen, res):
  tr, g = _standardised(train, test, gen, res, np.float64)
  lv, d = np.float64(res.log_variances), tr.shape[1]
  a = (-0.5 * ((tr[:, None] - g[None]) ** 2).sum(-1) / np.exp(lv)
       - 0.5 * d * (lv + np.log(2 * np.pi)))
  top = a.max(axis=1)
  lse = top + np.log(np.exp(a - top[:, None]).sum(axis=1))
  return -(lse - np.log(len(g))) / d


@pytest.mark.parametrize("options", [
    dict(),                                    # one batch, cached distances
    dict(batch_size=64, max_cache_bytes=0),    # shuffled rows, recomputed
    dict(max_generated=80, block_size=48),     # capped centres, padded blocks
])
def test_fit_train_nlls_are_the_recomputed_ones(options):
  train, test, gen = _sets(6, n_train=200, n_test=100, n_gen=100, d=6)
  test[:, 5] = 1.0                             # a dropped constant dimension
  res = fld_lib.fld(train, test, gen, key=KEY, max_epochs=10, **options)
  rows = np.asarray(res.train_nlls)
  assert rows.shape == (200,) and np.all(np.isfinite(rows))
  np.testing.assert_allclose(rows.mean(), float(res.nll_train), rtol=1e-6)
  # Near copies have tiny bandwidths that amplify float32 rounding of the
  # standardised features to ~1e-5 in both paths.
  np.testing.assert_allclose(rows, _float64_train_nlls(train, test, gen, res),
                             rtol=3e-5)
  # Rows 0 and 1 are equal and copied by two centres: the former path made
  # only one of the two zero distances exact (NLL up to log(2) / d high).
  np.testing.assert_allclose(
      rows[2:], _recomputed_train_nlls(train, test, gen, res)[2:], rtol=3e-5)
  # The copies' rows are far likelier than the others.
  assert rows[:30].mean() < rows[60:].mean() - 1.0
