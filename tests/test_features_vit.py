"""The flax ViT tower: its position-grid rules against torch's resizes, its
shapes against transformers' models, precision and input checks.

Parity of whole towers with transformers (and the hub's interpolation)
lives in test_features_vit_weights.py, which loads saved checkpoints.
torch and transformers are optional: the tests that need them skip.
"""

import jax
import numpy as np
import pytest

from gendiag.features import vit

TINY_DINO = vit.ViTConfig("dinov2", 14, 64, 2, 2, 256, grid=6)
TINY_CLIP = vit.ViTConfig("clip", 8, 64, 2, 2, 256, "quick_gelu",
                          layer_scale=False, ln_eps=1e-5, pre_norm=True,
                          patch_bias=False, projection_dim=24, grid=4,
                          interpolation="none")


def _torch():
  return pytest.importorskip("torch")


def _torch_resize(grid, **kwargs):
  """torch's F.interpolate of a (M, M, D) grid, back to (gh, gw, D)."""
  torch = _torch()
  x = torch.from_numpy(np.ascontiguousarray(grid.transpose(2, 0, 1)))[None]
  y = torch.nn.functional.interpolate(x, mode="bicubic", align_corners=False,
                                      **kwargs)
  return y[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("m, out", [(37, (16, 16)), (37, (16, 20)),
                                    (37, (40, 45)), (5, (3, 2))])
def test_hub_offset_rule_is_torchs_bicubic_with_scale_factor(m, out):
  # The hub's non-register rule: scale_factor ((gh + 0.1) / M, (gw + 0.1) / M).
  grid = np.random.default_rng(0).normal(size=(m, m, 3)).astype(np.float32)
  want = _torch_resize(grid, scale_factor=tuple((g + 0.1) / m for g in out))
  assert want.shape[:2] == out
  # torch resizes in float32 (source coordinates, weights, two passes):
  # ~1e-5 on unit-variance grids; the rules differ from each other by > 0.1.
  got = np.asarray(vit.resize_grid(grid, out, "offset_bicubic"))
  np.testing.assert_allclose(got, want, atol=3e-5)
  # transformers' Dinov2Model: size=(gh, gw), no offset.
  got = np.asarray(vit.resize_grid(grid, out, "size_bicubic"))
  np.testing.assert_allclose(got, _torch_resize(grid, size=out), atol=3e-5)


@pytest.mark.parametrize("out", [(16, 16), (16, 20), (40, 40)])
def test_register_rule_is_torchs_antialiased_bicubic(out):
  grid = np.random.default_rng(1).normal(size=(37, 37, 3)).astype(np.float32)
  want = _torch_resize(grid, size=out, antialias=True)
  got = np.asarray(vit.resize_grid(grid, out, "antialias_bicubic"))
  np.testing.assert_allclose(got, want, atol=3e-5)


def test_the_three_rules_differ_at_224():
  # The trap of the hub vs transformers: at 16 x 16 from 37 x 37 the
  # offset, size and antialiased resizes give different grids.
  grid = np.random.default_rng(2).normal(size=(37, 37, 4)).astype(np.float32)
  out = {rule: np.asarray(vit.resize_grid(grid, (16, 16), rule))
         for rule in ("offset_bicubic", "size_bicubic", "antialias_bicubic")}
  assert np.abs(out["offset_bicubic"] - out["size_bicubic"]).max() > 0.1
  assert np.abs(out["offset_bicubic"] - out["antialias_bicubic"]).max() > 0.1


def test_bicubic_matrix_is_a_partition_of_unity_and_identity_at_scale_1():
  for m, g, offset in ((37, 16, 0.1), (37, 16, 0.0), (7, 30, 0.1)):
    w = vit.bicubic_matrix(m, g, m / (g + offset))
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
  np.testing.assert_allclose(vit.bicubic_matrix(9, 9, 1.0), np.eye(9),
                             atol=1e-12)
  grid = np.ones((37, 37, 2), np.float32)
  assert vit.resize_grid(grid, (37, 37), "offset_bicubic") is grid


def test_clip_grid_is_fixed():
  with pytest.raises(ValueError, match="never interpolates"):
    vit.resize_grid(np.zeros((4, 4, 2)), (5, 5), "none")
  params = vit.random_params(TINY_CLIP)
  with pytest.raises(ValueError, match="takes exactly 32x32"):
    vit.forward(params, TINY_CLIP, np.zeros((1, 40, 40, 3), np.float32))


def test_bad_images_name_the_fix():
  params = vit.random_params(TINY_DINO)
  with pytest.raises(ValueError, match="NHWC"):
    vit.forward(params, TINY_DINO, np.zeros((2, 3, 84, 84), np.float32))
  with pytest.raises(ValueError, match="multiple of 14"):
    vit.forward(params, TINY_DINO, np.zeros((2, 80, 84, 3), np.float32))
  with pytest.raises(ValueError, match="whole number"):
    vit.forward(params, TINY_DINO, np.zeros((2, 0, 0, 3), np.float32))


def test_bad_configs_name_the_field():
  with pytest.raises(ValueError, match="heads"):
    vit.ViTConfig("dinov2", 14, 64, 2, 3, 256)
  with pytest.raises(ValueError, match="mlp"):
    vit.ViTConfig("dinov2", 14, 64, 2, 2, 256, "relu")
  with pytest.raises(ValueError, match="interpolation"):
    vit.ViTConfig("dinov2", 14, 64, 2, 2, 256, interpolation="bilinear")
  with pytest.raises(ValueError, match="family"):
    vit.ViTConfig("siglip", 14, 64, 2, 2, 256)


def test_rows_do_not_depend_on_the_batch():
  params = vit.random_params(TINY_DINO, seed=3)
  x = np.random.default_rng(3).normal(size=(3, 112, 84, 3)).astype(np.float32)
  whole = np.asarray(vit.forward(params, TINY_DINO, x)["pooled"])
  one = np.asarray(vit.forward(params, TINY_DINO, x[1:2])["pooled"])
  np.testing.assert_allclose(one[0], whole[1], rtol=1e-5, atol=1e-5)
  assert whole.shape == (3, 64) and np.isfinite(whole).all()


def _dot_precisions(jaxpr):
  """The precision of every dot_general in a jaxpr and its sub-jaxprs."""
  out = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append(eqn.params["precision"])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          out += _dot_precisions(getattr(inner, "jaxpr", inner))
  return out


@pytest.mark.parametrize("config, size", [
    (TINY_DINO, 84), (TINY_DINO, 56),
    (vit.ViTConfig("dinov2", 14, 64, 1, 2, 64, "swiglu", registers=2,
                   grid=6, interpolation="antialias_bicubic"), 56),
    (TINY_CLIP, 32)])
def test_every_product_runs_at_highest_precision(config, size):
  params = vit.random_params(config)
  images = np.zeros((1, size, size, 3), np.float32)
  jaxpr = jax.make_jaxpr(
      lambda p, x: vit.VisionTransformer(config).apply({"params": p}, x))(
          params, images)
  precisions = _dot_precisions(jaxpr.jaxpr)
  assert len(precisions) >= 7  # patches + the scanned block's six products
  highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
  assert all(p == highest for p in precisions), precisions


def test_feature_names_and_presets():
  assert vit.feature_name(TINY_CLIP) == "projected"
  assert vit.feature_name(TINY_DINO) == "pooled"
  assert vit.preset_name(TINY_DINO) == ""
  for name, config in vit.PRESETS.items():
    assert vit.preset_name(config) == name
  assert vit.PRESETS["dinov2_vitl14_reg"].interpolation == "antialias_bicubic"
  assert vit.PRESETS["clip_vit_l14_336"].image_size == 336
  params = vit.random_params(TINY_CLIP)
  out = vit.forward(params, TINY_CLIP,
                    np.zeros((2, 32, 32, 3), np.float32))
  assert out["projected"].shape == (2, 24) and out["pooled"].shape == (2, 64)


def _hf_count(name):
  """Parameters of transformers' model of a preset, built on torch's meta
  device (no memory, no init); DINOv2's unused mask_token excluded."""
  torch = _torch()
  transformers = pytest.importorskip("transformers")
  c = vit.PRESETS[name]
  with torch.device("meta"):
    if c.family == "clip":
      model = transformers.CLIPVisionModelWithProjection(
          transformers.CLIPVisionConfig(
              hidden_size=c.hidden, intermediate_size=c.mlp_hidden,
              num_hidden_layers=c.depth, num_attention_heads=c.heads,
              image_size=c.image_size, patch_size=c.patch_size,
              projection_dim=c.projection_dim))
      return sum(p.numel() for p in model.parameters())
    kwargs = dict(hidden_size=c.hidden, num_hidden_layers=c.depth,
                  num_attention_heads=c.heads, image_size=518, patch_size=14,
                  use_swiglu_ffn=c.mlp == "swiglu")
    if c.registers:
      model = transformers.Dinov2WithRegistersModel(
          transformers.Dinov2WithRegistersConfig(
              num_register_tokens=c.registers, **kwargs))
    else:
      model = transformers.Dinov2Model(transformers.Dinov2Config(**kwargs))
  return sum(p.numel() for p in model.parameters()) - c.hidden


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitl14_reg",
                                  "dinov2_vitg14", "clip_vit_b32",
                                  "clip_vit_l14_336"])
def test_presets_have_the_released_models_parameter_counts(name):
  shapes = vit.parameter_shapes(vit.PRESETS[name])
  ours = sum(int(np.prod(s)) for s in shapes.values())
  assert ours == _hf_count(name)
