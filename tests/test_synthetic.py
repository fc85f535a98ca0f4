"""Synthetic distributions and failure simulators do what they claim."""

import jax
import numpy as np
import pytest

from gendiag.data import synthetic


def test_ring_and_grid_modes():
  x, y = synthetic.ring(jax.random.key(0), 800, num_modes=8, radius=2.0,
                        std=0.01)
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.0, atol=0.05)
  assert set(np.asarray(y).tolist()) == set(range(8))
  g, labels = synthetic.grid(jax.random.key(1), 2000, side=5, std=0.01)
  assert len(np.unique(np.round(np.asarray(g), 1), axis=0)) == 25
  assert np.asarray(labels).max() == 24


def test_mixture_is_seeded_and_shares_centres():
  mix = synthetic.make_mixture(jax.random.key(0), num_classes=4, dim=16)
  a, la = synthetic.sample_mixture(jax.random.key(1), mix, 500)
  b, _ = synthetic.sample_mixture(jax.random.key(1), mix, 500)
  np.testing.assert_array_equal(a, b)
  for c in range(4):
    np.testing.assert_allclose(np.asarray(a)[np.asarray(la) == c].mean(0),
                               mix.centres[c], atol=0.35)


def test_weighted_mixture_frequencies():
  mix = synthetic.make_mixture(jax.random.key(0), num_classes=2, dim=2)
  _, labels = synthetic.sample_mixture(jax.random.key(2), mix, 4000,
                                       weights=[0.8, 0.2])
  np.testing.assert_allclose(np.mean(np.asarray(labels) == 0), 0.8, atol=0.03)


@pytest.fixture
def pool():
  mix = synthetic.make_mixture(jax.random.key(0), num_classes=5, dim=8)
  return synthetic.sample_mixture(jax.random.key(1), mix, 2000)


def test_drop_and_imbalance(pool):
  x, y = pool
  _, dy = synthetic.drop_classes(jax.random.key(2), x, y, [1, 3], 1000)
  assert not set(np.asarray(dy).tolist()) & {1, 3}
  _, iy = synthetic.imbalance_classes(jax.random.key(3), x, y,
                                      [4, 1, 1, 1, 1], 4000)
  np.testing.assert_allclose(np.mean(np.asarray(iy) == 0), 0.5, atol=0.03)
  with pytest.raises(ValueError, match="labels must have shape"):
    synthetic.drop_classes(jax.random.key(2), x, y[:10], [1], 10)


def test_memorize_copies_the_requested_fraction(pool):
  x, _ = pool
  fresh, train = x[:1000], x[1000:]
  out, source = synthetic.memorize(jax.random.key(4), fresh, train,
                                   fraction=0.3)
  source = np.asarray(source)
  copied = source >= 0
  assert copied.sum() == 300
  np.testing.assert_array_equal(np.asarray(out)[copied],
                                np.asarray(train)[source[copied]])
  np.testing.assert_array_equal(np.asarray(out)[~copied],
                                np.asarray(fresh)[~copied])
  with pytest.raises(ValueError, match="fraction"):
    synthetic.memorize(jax.random.key(4), fresh, train, fraction=1.5)


def test_shrink_and_noise(pool):
  x, y = pool
  s = np.asarray(synthetic.shrink(x, y, factor=0.5))
  x, y = np.asarray(x), np.asarray(y)
  for c in range(5):
    np.testing.assert_allclose(s[y == c].std(0), 0.5 * x[y == c].std(0),
                               rtol=1e-4)
  noisy = np.asarray(synthetic.add_noise(jax.random.key(5), x, std=2.0))
  np.testing.assert_allclose((noisy - x).std(), 2.0, rtol=0.02)


def test_simulate_models_names_and_sizes(pool):
  x, y = pool
  models = synthetic.simulate_models(jax.random.key(6), x, y, x[:100], n=200,
                                     dropped=(2,))
  assert [m.name for m in models] == ["good", "dropped", "imbalanced",
                                      "memorized", "noisy", "shrunk"]
  assert all(m.features.shape == (200, 8) for m in models)
  assert 2 not in np.asarray(models[1].labels).tolist()
