"""Images -> Inception features: batching, order, padding, cache, binary."""

import json
import os

import numpy as np
from PIL import Image
import pytest
from sklearn.datasets import load_sample_images

from configs import extract_features as extract_config
from gendiag.experiments import extract_features
from gendiag.features import extract
from gendiag.features import inception
from gendiag.features import inception_weights
from gendiag.features import resize


def _random_weights():
  params = inception.random_params(0, logits=True)
  return inception_weights.InceptionWeights(
      params=params, sha256="0" * 64, source="random (test)",
      layout="torchscript", has_logits=True)


def _folder(tmp_path, images):
  root = tmp_path / "images"
  (root / "sub").mkdir(parents=True)
  for i, image in enumerate(images):
    # Nested and unsorted on disk: the source sorts by relative path.
    where = root / "sub" if i % 2 else root
    Image.fromarray(image).save(where / f"img_{i:02d}.png")
  return root


def test_every_image_once_in_order_with_a_padded_last_batch(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 80, 80, 3), dtype=np.uint8)
  weights = _random_weights()
  cache = str(tmp_path / "cache")
  out = extract.embed_images(images, weights=weights, batch_size=2,
                             cache_dir=cache, progress=False)
  x = resize.preprocess(images, "adm")
  halves = [inception.forward(weights.params, x[:2]),
            inception.forward(weights.params,
                              np.concatenate([x[2:], x[2:]]))]
  direct = {k: np.concatenate([halves[0][k], halves[1][k][:1]])
            for k in halves[0]}
  assert set(out.features) == {"pool3", "spatial", "logits",
                               "logits_unbiased"}
  for k, v in direct.items():
    assert out.features[k].shape == (3, v.shape[-1])
    np.testing.assert_allclose(out.features[k], v, rtol=1e-5, atol=1e-5)
  assert not out.metadata["cached"] and out.metadata["n"] == 3
  again = extract.embed_images(images, weights=weights, batch_size=3,
                               cache_dir=cache, progress=False)
  assert again.metadata["cached"]
  for k in out.features:
    np.testing.assert_array_equal(again.features[k], out.features[k])
  other = extract.embed_images(images, weights=weights, batch_size=2,
                               preprocessing="clean_fid", cache_dir=cache,
                               progress=False)
  assert not other.metadata["cached"]  # another preprocessing, another key


def test_folders_keep_sorted_file_order(tmp_path):
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
            for _ in range(2)] + [rng.integers(0, 256, (96, 90, 3),
                                               dtype=np.uint8)]
  root = _folder(tmp_path, images)
  weights = _random_weights()
  out = extract.embed_images(str(root), weights=weights, batch_size=2,
                             cache_dir="off", progress=False)
  # Sorted relative paths: img_00.png, img_02.png, sub/img_01.png.
  order = [0, 2, 1]
  for row, i in enumerate(order):
    x = resize.preprocess(images[i][None], "adm")
    one = inception.forward(weights.params, np.concatenate([x, x]))
    np.testing.assert_allclose(out.features["pool3"][row], one["pool3"][0],
                               rtol=1e-5, atol=1e-5)


def test_bad_arguments_name_the_fix(tmp_path):
  with pytest.raises(ValueError, match="batch_size"):
    extract.embed_images(np.zeros((2, 80, 80, 3), np.uint8),
                         weights=_random_weights(), batch_size=0)
  config = extract_config.get_config("smoke")
  config.images = str(tmp_path)
  with pytest.raises(ValueError, match="ships no Inception weights"):
    extract_features.run(config, str(tmp_path / "out"))
  config.weights = "w.pt"
  config.preprocessing = "bicubic"
  with pytest.raises(ValueError, match="preprocessing"):
    extract_features.run(config, str(tmp_path / "out"))


def test_binary_writes_features_with_real_weights(fid_wheel, tmp_path):
  china = np.asarray(load_sample_images().images[0])
  crops = [china[64:363, 170:469], china[:299, :299], china[100:399, :299]]
  root = _folder(tmp_path, crops)
  config = extract_config.get_config("smoke")
  config.update(images=str(root), weights=fid_wheel,
                cache_dir=str(tmp_path / "cache"))
  workdir = str(tmp_path / "out")
  meta = extract_features.run(config, workdir)
  with np.load(os.path.join(workdir, "features.npz")) as f:
    assert sorted(f.keys()) == ["metadata", "pool3", "spatial"]
    pool3, spatial = f["pool3"], f["spatial"]
    stored = json.loads(str(f["metadata"]))
  assert pool3.shape == (3, 2048) and spatial.shape == (3, 2023)
  assert stored["weights_sha256"] == meta["weights_sha256"] == (
      "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011")
  assert stored["preprocessing"] == "adm" and stored["n"] == 3
  # The exact 299 crop is unresized: the TorchScript's regression numbers.
  np.testing.assert_allclose(pool3[0].mean(), 0.2470174, rtol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(spatial[0]), 22.64213, rtol=2e-5)
  second = extract_features.run(config, workdir)
  assert second["cached"]
