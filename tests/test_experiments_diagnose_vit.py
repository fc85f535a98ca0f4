"""The main job from image folders with tiny random DINOv2 and CLIP
checkpoints written by transformers' `save_pretrained`: every family runs in
the tower's space, fid is named FD_DINOv2 in DINOv2 space, cmmd runs in
CLIP space, and the report states the space. Skips without transformers.
"""

import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_sample_images

from configs import diagnose as diagnose_config
from gendiag.experiments import diagnose
from gendiag.features import extract
from tests.conftest import image_folder
from tests.conftest import random_crops

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CROP = 64


def _crops(image, n, seed):
  return random_crops(image, n, seed, CROP)


_folder = image_folder


def _save(model, folder):
  torch.manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.02 * torch.randn(p.shape))
  model.eval().save_pretrained(folder)
  return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("images")
  china, flower = (np.asarray(x) for x in load_sample_images().images)
  n = 12
  return {"real": _folder(str(root / "real"), _crops(china, n, 0)),
          "same": _folder(str(root / "same"), _crops(china, n, 1)),
          "other": _folder(str(root / "other"), _crops(flower, n, 2)),
          "train": _folder(str(root / "train"), _crops(china, n, 3)),
          "test": _folder(str(root / "test"), _crops(china, n, 4)), "n": n}


def _config(folders, extractor, weights, tmp_path):
  config = diagnose_config.get_config("smoke")
  config.update(real=folders["real"],
                generated=f"same={folders['same']},other={folders['other']}",
                train=folders["train"], test=folders["test"],
                extractor=extractor, weights=weights,
                cache_dir=str(tmp_path / "cache"), batch_size=folders["n"])
  config.precision_recall.prd_clusters = 6  # PRD needs more rows than k
  return config


def _skipped(metrics):
  return {k for k, v in metrics["families"].items()
          if v["notes"] and v["notes"][0].startswith("skipped")}


def test_dinov2_folder_gives_fd_dinov2_and_every_family(folders, tmp_path):
  weights = _save(transformers.Dinov2Model(transformers.Dinov2Config(
      hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
      intermediate_size=64, image_size=518, patch_size=14)),
      tmp_path / "dino")
  config = _config(folders, "dinov2", weights, tmp_path)
  workdir = str(tmp_path / "out")
  metrics = diagnose.run(config, workdir)
  assert _skipped(metrics) == {"cas", "gel", "cmmd", "image_scores"}
  assert "DINOv2 ViT (patch 14, width 32, depth 1) CLS" in (
      metrics["meta"]["data"])
  assert "dgm_eval_dinov2 preprocessing" in metrics["meta"]["data"]
  models = metrics["models"]
  for name in ("same", "other"):
    for metric in ("fd_dinov2", "kid", "mmd2", "precision", "mauve", "fld"):
      assert metric in models[name], (name, sorted(models[name]))
      assert np.isfinite(models[name][metric]["value"])
    assert "fid" not in models[name]
  with open(os.path.join(workdir, "report.md")) as f:
    text = f.read()
  assert "Feature space: DINOv2 ViT" in text and "FD_DINOv2" in text
  # A released model's name must match the checkpoint.
  config.extractor = "dinov2_vitl14"
  with pytest.raises(ValueError, match="extractor='dinov2'"):
    diagnose.run(config, str(tmp_path / "out2"))


def test_clip_folder_gives_cmmd(folders, tmp_path):
  weights = _save(transformers.CLIPVisionModelWithProjection(
      transformers.CLIPVisionConfig(
          hidden_size=32, intermediate_size=64, num_hidden_layers=1,
          num_attention_heads=2, image_size=32, patch_size=16,
          projection_dim=16, hidden_act="quick_gelu")), tmp_path / "clip")
  config = _config(folders, "clip", weights, tmp_path)
  config.metrics = "fid,cmmd,mmd"
  metrics = diagnose.run(config, str(tmp_path / "out"))
  assert _skipped(metrics) == set()
  assert "CLIP ViT (patch 16, width 32, depth 1) image embedding" in (
      metrics["meta"]["data"])
  assert "openai_clip preprocessing" in metrics["meta"]["data"]
  for name in ("same", "other"):
    entry = metrics["models"][name]
    for metric in ("cmmd", "cmmd_unbiased", "cmmd_p_value", "fid"):
      assert np.isfinite(entry[metric]["value"]), (name, metric)
    assert entry["cmmd"]["value"] >= 0.0
    # google-research's number as that peer reports it (no interval); its
    # unbiased twin carries the interval.
    lo, hi = entry["cmmd_unbiased"]["ci"]
    assert lo <= entry["cmmd_unbiased"]["value"] <= hi, name
  cached = [json.loads(str(np.load(p)["__metadata__"]))
            for p in (tmp_path / "cache").glob("*.npz")]
  assert {c["extractor"] for c in cached} == {"clip"}
  assert all(c["feature"] == "projected" for c in cached)


def test_embed_images_keys_the_cache_by_extractor_and_preprocessing(
    folders, tmp_path):
  weights = _save(transformers.Dinov2Model(transformers.Dinov2Config(
      hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
      intermediate_size=64, image_size=518, patch_size=14)),
      tmp_path / "dino")
  cache = str(tmp_path / "cache")
  first = extract.embed_images(folders["real"], weights=weights,
                               extractor="dinov2", cache_dir=cache,
                               progress=False)
  again = extract.embed_images(folders["real"], weights=weights,
                               extractor="dinov2", cache_dir=cache,
                               progress=False)
  other = extract.embed_images(folders["real"], weights=weights,
                               extractor="dinov2", cache_dir=cache,
                               preprocessing="torch_fidelity_dinov2",
                               progress=False)
  assert not first.metadata["cached"] and again.metadata["cached"]
  assert not other.metadata["cached"]
  np.testing.assert_array_equal(first.features["pooled"],
                                again.features["pooled"])
  assert first.features["pooled"].shape == (folders["n"], 32)
  assert not np.allclose(first.features["pooled"], other.features["pooled"])
  with pytest.raises(ValueError, match="for clip towers"):
    extract.embed_images(folders["real"], weights=weights,
                         extractor="dinov2", preprocessing="cmmd",
                         cache_dir="off", progress=False)
  with pytest.raises(ValueError, match="unknown extractor"):
    extract.embed_images(folders["real"], weights=weights,
                         extractor="dino", cache_dir="off")
