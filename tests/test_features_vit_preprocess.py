"""Each ViT peer's front-end against the peer's own pipeline, on real photos.

References (torchvision is not installable beside torch 2.13.0, so none of
these runs torchvision itself):
  dgm_eval_dinov2        transformers' BitImageProcessor (its Pillow
                         backend: Pillow BICUBIC to 224 x 224, /255,
                         ImageNet mean/std), which is what dgm-eval's
                         torchvision Resize((224, 224)) does to a PIL image;
  torch_fidelity_dinov2  a numpy float64 gather transcription of
                         torch-fidelity's interpolate_bilinear_2d_like_
                         tensorflow1x and its normalize(255 mean, 255 std);
  openai_clip            a Pillow + numpy transcription of OpenAI's
                         `_transform` (torchvision Resize(n) = shortest side
                         to n, long side int(n * long / short); CenterCrop's
                         offset int(round(excess / 2))), and transformers'
                         CLIPImageProcessor where its crop offset, floor(excess
                         / 2), is the same (an even excess);
  cmmd                   a Pillow + numpy transcription of google-research/
                         cmmd's io_util (crop to the centred square, Pillow
                         BICUBIC) and embedding (/255, CLIP mean/std).
Tolerance: 1/255 on the 0..1 scale (plus float32 round-off). Observed: at
most one uint8 level, on 0.002-0.03 % of the pixels (Pillow sums with
22-bit fixed-point coefficients), and 3e-5 levels for the float peers.
"""

import numpy as np
from PIL import Image
import pytest
from sklearn.datasets import load_sample_images

from gendiag.features import vit_preprocess as vp

TOL = 1.0 / 255.0 + 1e-6


@pytest.fixture(scope="module")
def photos():
  """The two 427 x 640 sklearn photos, (2, 427, 640, 3) uint8."""
  return np.stack(load_sample_images().images)


def _pixels(name, images, size):
  """gendiag's output mapped back to the 0..1 scale."""
  spec = vp.VIT_PREPROCESSING[name]
  out = np.asarray(vp.preprocess_vit(images, name, size=size), np.float64)
  return out * np.array(spec.std) + np.array(spec.mean)


def _close(ours, reference):
  assert ours.shape == reference.shape, (ours.shape, reference.shape)
  err = np.abs(ours - reference)
  assert err.max() <= TOL, err.max() * 255
  assert np.mean(err > 1e-4) < 1e-3   # off by a level only at a few pixels


def _openai(image, n):
  """OpenAI CLIP's _transform(n) up to ToTensor, as torchvision runs it."""
  im = Image.fromarray(image)
  w, h = im.size
  if w <= h:
    size = (n, int(n * h / w))
  else:
    size = (int(n * w / h), n)
  im = im.resize(size, Image.BICUBIC)
  left = int(round((size[0] - n) / 2.0))
  top = int(round((size[1] - n) / 2.0))
  return np.asarray(im.crop((left, top, left + n, top + n))) / 255.0


def _cmmd(image, n):
  """google-research/cmmd's _center_crop_and_resize, then / 255."""
  im = Image.fromarray(image)
  w, h = im.size
  side = min(w, h)
  top, left = (h - side) // 2, (w - side) // 2
  im = im.crop((left, top, left + side, top + side))
  return np.asarray(im.resize((n, n), Image.BICUBIC), np.float64) / 255.0


def _tf1_bilinear(image, size):
  """TF1 legacy ResizeBilinear of one (H, W, C) image, float64 gathers."""
  def axis(n_in, n_out):
    s = np.arange(n_out) * (n_in / n_out)
    lo = np.floor(s).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), s - lo
  x = image.astype(np.float64)
  lo, hi, t = axis(x.shape[1], size)
  x = x[:, lo] * (1 - t)[None, :, None] + x[:, hi] * t[None, :, None]
  lo, hi, t = axis(x.shape[0], size)
  return x[lo] * (1 - t)[:, None, None] + x[hi] * t[:, None, None]


def test_dgm_eval_dinov2_equals_the_bit_image_processor(photos):
  transformers = pytest.importorskip("transformers")
  processor = transformers.BitImageProcessorPil(
      do_resize=True, size={"height": 224, "width": 224},
      resample=Image.BICUBIC, do_center_crop=False, do_rescale=True,
      do_normalize=False, do_convert_rgb=True)
  reference = np.stack([processor(x)["pixel_values"][0].transpose(1, 2, 0)
                        for x in photos])
  _close(_pixels("dgm_eval_dinov2", photos, 224), reference)


def test_torch_fidelity_dinov2_equals_its_tf1_bilinear(photos):
  spec = vp.VIT_PREPROCESSING["torch_fidelity_dinov2"]
  resized = np.stack([_tf1_bilinear(x, 224) for x in photos])
  reference = (resized - 255 * np.array(spec.mean)) / (255 * np.array(spec.std))
  ours = np.asarray(vp.preprocess_vit(photos, spec, size=224), np.float64)
  # Normalised units: 1/255 of the 0..1 scale is 1 / (255 std) here.
  assert np.abs(ours - reference).max() * min(spec.std) <= 1e-4


@pytest.mark.parametrize("n", [224, 64])
def test_openai_clip_equals_openais_transform(photos, n):
  reference = np.stack([_openai(x, n) for x in photos])
  _close(_pixels("openai_clip", photos, n), reference)


def test_openai_clip_equals_clip_image_processor_on_even_crops(photos):
  transformers = pytest.importorskip("transformers")
  crops = photos[:, :, :600]  # 224 x int(224 * 600 / 427) = 314: excess 90
  processor = transformers.CLIPImageProcessorPil(do_normalize=False)
  reference = np.stack([processor(x)["pixel_values"][0].transpose(1, 2, 0)
                        for x in crops])
  _close(_pixels("openai_clip", crops, 224), reference)


@pytest.mark.parametrize("n", [336, 224])
def test_cmmd_equals_its_io_util(photos, n):
  reference = np.stack([_cmmd(x, n) for x in photos])
  _close(_pixels("cmmd", photos, n), reference)


def test_portrait_images_crop_the_other_axis(photos):
  portrait = np.ascontiguousarray(photos.transpose(0, 2, 1, 3))
  _close(_pixels("openai_clip", portrait, 224),
         np.stack([_openai(x, 224) for x in portrait]))
  _close(_pixels("cmmd", portrait, 224),
         np.stack([_cmmd(x, 224) for x in portrait]))


def test_a_square_image_at_the_size_is_only_the_normalisation():
  x = np.random.default_rng(0).integers(0, 256, (2, 56, 56, 3), np.uint8)
  for name in ("openai_clip", "cmmd"):
    spec = vp.VIT_PREPROCESSING[name]
    expected = (x / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(vp.preprocess_vit(x, name, size=56), expected,
                               atol=1e-5)


def test_rows_of_every_geometry_sum_to_one():
  for spec in vp.VIT_PREPROCESSING.values():
    for h, w in ((427, 640), (640, 427), (100, 100)):
      for m in vp.axis_matrices(h, w, spec, 224):
        assert m.shape == (224, m.shape[1])
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)


def test_the_family_check_and_bad_inputs_raise():
  with pytest.raises(ValueError, match="for clip towers"):
    vp.get_vit_preprocessing("cmmd", "dinov2")
  with pytest.raises(ValueError, match="unknown ViT preprocessing"):
    vp.get_vit_preprocessing("adm")
  x = np.zeros((1, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match="size"):
    vp.preprocess_vit(x, "cmmd", size=0)
  with pytest.raises(ValueError, match="RGB"):
    vp.preprocess_vit(x[..., :1], "cmmd", size=8)
