"""The bundled digits: loading, the fixed split, blur, simulated models, grids."""

import io
import zlib

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np
import pytest
import scipy.ndimage
from sklearn import datasets

from gendiag.data import digits


def test_load_matches_sklearn_scaled_to_unit_range():
  d = digits.load()
  raw = datasets.load_digits()
  assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.float32
  assert d.labels.dtype == np.int32
  np.testing.assert_array_equal(d.images * 16, raw.images)
  np.testing.assert_array_equal(d.labels, raw.target)
  assert d.images.min() == 0.0 and d.images.max() == 1.0
  with pytest.raises(ValueError):
    d.images[0, 0, 0] = 1.0  # cached arrays are read-only


def test_split_partitions_and_stratifies():
  labels = np.repeat(np.arange(4), [10, 20, 31, 7])
  parts = digits.split(labels, {"a": 0.5, "b": 0.3, "c": 0.2},
                       key=jax.random.key(3))
  union = np.concatenate(list(parts.values()))
  np.testing.assert_array_equal(np.sort(union), np.arange(len(labels)))
  for c, n in enumerate([10, 20, 31, 7]):
    for name, share in [("a", 0.5), ("b", 0.3), ("c", 0.2)]:
      assert abs(np.sum(labels[parts[name]] == c) - share * n) <= 1
  again = digits.split(labels, {"a": 0.5, "b": 0.3, "c": 0.2},
                       key=jax.random.key(3))
  other = digits.split(labels, {"a": 0.5, "b": 0.3, "c": 0.2},
                       key=jax.random.key(4))
  np.testing.assert_array_equal(parts["a"], again["a"])
  assert not np.array_equal(parts["a"], other["a"])


@pytest.mark.parametrize("fractions", [{"a": 0.5, "b": 0.4}, {"a": 1.2,
                                                              "b": -0.2}, {}])
def test_split_rejects_bad_fractions(fractions):
  with pytest.raises(ValueError, match="fractions"):
    digits.split(np.zeros(10, int), fractions, key=jax.random.key(0))
  with pytest.raises(ValueError, match="strata"):
    digits.split(np.zeros(10), {"a": 1.0}, key=jax.random.key(0))


def test_fixed_train_test_split_never_changes():
  """The shipped feature net's test accuracy is valid only for this split."""
  train, test = digits.train_test()
  assert (len(train), len(test)) == (1258, 539)
  assert not set(train.tolist()) & set(test.tolist())
  assert zlib.crc32(np.asarray(test, np.int64).tobytes()) == 3325881816
  counts = np.bincount(digits.load().labels[test])
  assert counts.min() >= 52 and counts.max() <= 55


@pytest.mark.parametrize("sigma", [0.5, 0.7, 1.3])
def test_blur_matches_scipy_nearest_mode(sigma):
  images = digits.load().images[:6]
  got = np.asarray(digits.blur(images, sigma=sigma))
  want = np.stack([scipy.ndimage.gaussian_filter(np.float64(im), sigma,
                                                 mode="nearest")
                   for im in images])
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_blur_invariances_and_gradient():
  const = jnp.full((2, 8, 8), 0.3)
  np.testing.assert_allclose(digits.blur(const, sigma=0.8), const, rtol=1e-6)
  images = jnp.asarray(digits.load().images[:3])
  with jax.disable_jit():
    eager = digits.blur(images, sigma=0.7)
  np.testing.assert_allclose(digits.blur(images, sigma=0.7), eager,
                             atol=1e-6)
  grad = jax.grad(lambda x: digits.blur(x, sigma=0.7)[0, 3, 3])(images)
  assert np.isclose(float(grad.sum()), 1.0, atol=1e-5)  # taps sum to 1
  with pytest.raises(ValueError, match="sigma"):
    digits.blur(images, sigma=0.0)


@pytest.fixture(scope="module")
def simulated():
  data = digits.load()
  parts = digits.split(data.labels, {"pool": 0.5, "train": 0.5},
                       key=jax.random.key(0))
  pool, train = data.take(parts["pool"]), data.take(parts["train"])
  models = digits.simulate_models(jax.random.key(1), pool, train, n=400,
                                  dropped=(3, 8), imbalance=0.2,
                                  blur_sigma=0.7, copy_fraction=0.5,
                                  typical_fraction=0.3)
  return pool, train, {m.name: m for m in models}


def _rows_in(images, reference):
  ref = {r.tobytes() for r in np.asarray(reference, np.float32)}
  return np.array([im.tobytes() in ref for im in np.asarray(images)])


def test_simulated_models_have_their_failures(simulated):
  pool, train, m = simulated
  assert list(m) == ["good", "dropped", "imbalanced", "blurred", "memorized",
                     "shrunk"]
  for model in m.values():
    assert model.images.shape == (400, 8, 8) and model.labels.shape == (400,)
    assert model.failure
  good = m["good"]
  assert _rows_in(good.images, pool.images).all()
  assert not _rows_in(good.images, train.images).any()
  assert len(np.unique(good.images.reshape(400, -1), axis=0)) == 400
  assert not np.isin(m["dropped"].labels, [3, 8]).any()
  counts = np.bincount(m["imbalanced"].labels, minlength=10)
  np.testing.assert_allclose(counts[1::2] / counts[0::2], 0.2, atol=0.02)
  np.testing.assert_allclose(m["blurred"].images,
                             digits.blur(good.images, sigma=0.7), atol=1e-6)
  np.testing.assert_array_equal(m["blurred"].labels, good.labels)


def test_memorized_copies_train_digits_with_their_labels(simulated):
  _, train, m = simulated
  mem = m["memorized"]
  copied = _rows_in(mem.images, train.images)
  assert copied.sum() == 200  # copy_fraction 0.5 of 400
  lookup = {im.tobytes(): y for im, y in zip(train.images, train.labels)}
  for im, y in zip(mem.images[copied], mem.labels[copied]):
    assert lookup[im.tobytes()] == y


def test_shrunk_keeps_only_typical_digits(simulated):
  pool, _, m = simulated
  typical = digits.typical_rows(pool.images, pool.labels, 0.3)
  assert _rows_in(m["shrunk"].images, pool.images[typical]).all()
  assert len(np.unique(m["shrunk"].images.reshape(400, -1), axis=0)) <= len(
      typical) < 0.35 * len(pool)
  # Typical rows are nearer their class mean than the rest of the class.
  flat = pool.images.reshape(len(pool), -1)
  c = pool.labels == 0
  dist = np.linalg.norm(flat[c] - flat[c].mean(0), axis=1)
  kept = np.isin(np.flatnonzero(c), typical)
  assert dist[kept].max() <= dist[~kept].min()


def test_simulate_rejects_bad_settings(simulated):
  pool, train, _ = simulated
  with pytest.raises(ValueError, match="n"):
    digits.simulate_models(jax.random.key(0), pool, train, n=len(pool) + 1)
  with pytest.raises(ValueError, match="copy_fraction"):
    digits.simulate_models(jax.random.key(0), pool, train, n=10,
                           copy_fraction=1.5)


def test_grids_are_figures(simulated):
  _, _, m = simulated
  fig = digits.image_grid(m["good"].images[:25], m["good"].labels[:25],
                          title="good")
  assert isinstance(fig, Figure)
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  assert buf.tell() > 1000
  fig = digits.named_grids({name: (x.images, x.labels)
                            for name, x in m.items()})
  assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(m)
  # Flat square images are accepted; other shapes are not.
  digits.image_grid(m["good"].images[:4].reshape(4, 64))
  with pytest.raises(ValueError, match="square"):
    digits.image_grid(np.zeros((2, 10)))
  with pytest.raises(ValueError, match="same shape"):
    digits.named_grids({"a": (np.zeros((3, 8, 8)), None),
                        "b": (np.zeros((3, 4, 4)), None)})
