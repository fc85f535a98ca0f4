"""The shipped digits feature network and the extractor extension point."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import train_feature_net as train_config
from gendiag import features
from gendiag.data import digits
from gendiag.experiments import train_feature_net
from gendiag.features import digits_net

# Recorded by experiments/train_feature_net.py for the shipped weights:
# 537 of the 539 digits of digits.train_test()'s test split.
SHIPPED_TEST_ACCURACY = 537 / 539


@pytest.fixture(scope="module")
def data():
  return digits.load()


def test_shipped_weights_reach_recorded_test_accuracy(data):
  assert os.path.getsize(digits_net.WEIGHTS_PATH) < 400_000
  params, meta = digits_net.load_params()
  assert sum(x.size for x in jax.tree.leaves(params)) == 45_162
  train_idx, test_idx = digits.train_test()
  acc = digits_net.accuracy(params, data.images[test_idx],
                            data.labels[test_idx])
  assert acc >= 0.95
  assert acc == pytest.approx(SHIPPED_TEST_ACCURACY, abs=1e-6)
  assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-6)
  assert meta["num_test"] == len(test_idx) and meta["num_train"] == len(
      train_idx)
  logits = digits_net.digits_logits(data.images[test_idx])
  assert np.sum(np.argmax(logits, -1) != data.labels[test_idx]) == 2


def test_features_shape_scale_and_no_dead_units(data):
  train_idx, _ = digits.train_test()
  f = np.asarray(features.digits_features(data.images[train_idx]))
  assert f.shape == (len(train_idx), 64) and f.dtype == np.float32
  assert np.isfinite(f).all()
  # Scaled so the training digits' mean squared entry is 1.
  np.testing.assert_allclose(np.mean(f.astype(np.float64) ** 2), 1.0,
                             rtol=1e-4)
  assert f.std(0).min() > 0.05  # GELU: no dead features


def test_features_do_not_depend_on_batching_or_input_layout(data):
  x = data.images[:700]  # crosses the 256-row blocks
  full = np.asarray(features.digits_features(x))
  np.testing.assert_allclose(features.digits_features(x[300:301]),
                             full[300:301], atol=1e-5)
  np.testing.assert_allclose(features.digits_features(x.reshape(700, 64)),
                             full, atol=1e-6)
  np.testing.assert_allclose(features.digits_features(x[..., None]), full,
                             atol=1e-6)
  jitted = jax.jit(features.digits_features)(jnp.asarray(x[:50]))
  np.testing.assert_allclose(jitted, full[:50], atol=1e-5)


def test_features_are_differentiable(data):
  x = jnp.asarray(data.images[:4])
  grad = jax.grad(lambda im: features.digits_features(im).sum())(x)
  assert grad.shape == x.shape and np.isfinite(grad).all()
  assert float(jnp.abs(grad).max()) > 0


def test_conv3x3_equals_lax_convolution(rng):
  x = jnp.asarray(rng.normal(size=(3, 8, 8, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 5, 7)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(7,)), jnp.float32)
  ours = digits_net.Conv3x3(7).apply(
      {"params": {"Dense_0": {"kernel": kernel.reshape(45, 7),
                              "bias": bias}}}, x)
  conv = nn.Conv(7, (3, 3), padding="SAME",
                 precision=jax.lax.Precision.HIGHEST)
  want = conv.apply({"params": {"kernel": kernel, "bias": bias}}, x)
  np.testing.assert_allclose(ours, want, atol=1e-5)


def test_host_init_is_lecun_normal_and_seeded():
  model = digits_net.DigitsNet()
  rngs = [np.random.default_rng(0), np.random.default_rng(1)]
  params = digits_net.init_params(model, (8, 8), rngs)
  again = digits_net.init_params(model, (8, 8), [np.random.default_rng(0)])
  kernel = np.asarray(params["Dense_0"]["kernel"])  # (2, 256, 64)
  assert kernel.shape == (2, 256, 64)
  np.testing.assert_array_equal(kernel[0],
                                again["Dense_0"]["kernel"][0])
  assert not np.array_equal(kernel[0], kernel[1])
  np.testing.assert_allclose(kernel.std(), np.sqrt(1 / 256), rtol=0.05)
  assert np.abs(kernel).max() <= 2 * np.sqrt(1 / 256) / .8796 + 1e-6
  assert not np.any(params["Dense_0"]["bias"])


@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 8, 8, 3), (3, 63), (8, 8)])
def test_wrong_image_shapes_raise(shape):
  with pytest.raises(ValueError, match="8x8"):
    features.digits_features(np.zeros(shape, np.float32))


def test_non_finite_images_raise(data):
  x = np.array(data.images[:3])
  x[1, 2, 2] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    features.digits_features(x)


def test_extractor_extension_point(data):
  x = data.images[:10]
  np.testing.assert_array_equal(features.embed("pixels", x),
                                x.reshape(10, 64))
  mine = lambda im: np.asarray(im).reshape(len(im), -1)[:, :5] * 2
  np.testing.assert_allclose(features.embed(mine, x),
                             x.reshape(10, 64)[:, :5] * 2)
  assert features.get(mine) is mine
  assert features.get("digits_net") is features.digits_features
  with pytest.raises(ValueError, match="unknown extractor"):
    features.get("inception")
  with pytest.raises(ValueError, match="one row per image"):
    features.embed(lambda im: np.zeros((3, 4)), x)
  with pytest.raises(ValueError, match="one row per image"):
    features.embed(lambda im: np.zeros((10, 2, 2)), x)
  with pytest.raises(ValueError, match="NaN"):
    features.embed(lambda im: np.full((10, 2), np.nan), x)


def test_save_load_round_trip(tmp_path):
  params, _ = digits_net.load_params()
  path = str(tmp_path / "w.npz")
  digits_net.save_params(path, params, test_accuracy=0.5, feature_scale=2.0)
  loaded, meta = digits_net.load_params(path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  assert meta == {"test_accuracy": 0.5, "feature_scale": 2.0}
  x = digits.load().images[:5]
  np.testing.assert_allclose(
      features.digits_features(x, params=loaded, scale=2.0),
      features.digits_features(x) * digits_net.load_params()[1][
          "feature_scale"] / 2.0, rtol=1e-5)
  with pytest.raises(ValueError, match="no feature-network weights"):
    digits_net.load_params(str(tmp_path / "missing.npz"))


def test_training_smoke_config_end_to_end(tmp_path):
  """The binary's library function with the smoke config (20 steps)."""
  config = train_config.get_config("smoke")
  metrics = train_feature_net.run(config, str(tmp_path))
  assert os.path.exists(tmp_path / "digits_net.npz")
  saved = json.load(open(tmp_path / "metrics.json"))
  assert saved["steps"] == 20 and saved["num_params"] == 45_162
  _, meta = digits_net.load_params(str(tmp_path / "digits_net.npz"))
  assert meta["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
  assert 0.1 < metrics["test_accuracy"] <= 1.0  # 20 steps: better than chance
  assert np.isfinite(metrics["final_loss"]) and metrics["feature_scale"] > 0
  with pytest.raises(ValueError, match="smoke"):
    train_config.get_config("nope")
