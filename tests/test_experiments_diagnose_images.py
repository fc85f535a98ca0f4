"""The main job from image folders with real FID-Inception weights."""

import json
import os

import numpy as np
from sklearn.datasets import load_sample_images

from configs import diagnose as diagnose_config
from gendiag import io
from gendiag.experiments import diagnose
from tests.conftest import image_folder
from tests.conftest import random_crops

CROP = 96  # up-sampled to 299 by the TF1 resize


def _crops(image, n, seed):
  return random_crops(image, n, seed, CROP)


_folder = image_folder


def test_two_image_folders_give_fid_sfid_and_every_family(fid_wheel,
                                                          tmp_path):
  china, flower = (np.asarray(x) for x in load_sample_images().images)
  n = 16
  real = _folder(str(tmp_path / "real"), _crops(china, n, 0))
  same = _folder(str(tmp_path / "same"), _crops(china, n, 1))
  other = _folder(str(tmp_path / "other"), _crops(flower, n, 2))
  train = _folder(str(tmp_path / "train"), _crops(china, n, 3))
  test = _folder(str(tmp_path / "test"), _crops(china, n, 4))
  config = diagnose_config.get_config("smoke")
  config.update(real=real, generated=f"same={same},other={other}",
                train=train, test=test, extractor="inception_fid",
                weights=fid_wheel, cache_dir=str(tmp_path / "cache"),
                batch_size=n)
  config.precision_recall.prd_clusters = 8  # PRD needs more rows than k
  workdir = str(tmp_path / "out")
  first = diagnose.run(config, workdir)
  # Every family ran but the two that need class labels.
  skipped = {k for k, v in first["families"].items()
             if v["notes"] and v["notes"][0].startswith("skipped")}
  # (and cmmd, which needs CLIP embeddings).
  assert skipped == {"cas", "gel", "cmmd"}, skipped
  # A reference in the ADM format, from the real folder's own features;
  # the second run reads every embedding from the cache.
  features = np.load(_cached_real(tmp_path))
  ref_path = str(tmp_path / "VIRTUAL_test.npz")
  io.save_adm_reference(ref_path, pool3=features["pool3"],
                        spatial=features["spatial"])
  config.reference = ref_path
  metrics = diagnose.run(config, workdir)
  assert "FID Inception pool3" in metrics["meta"]["data"]
  assert "56763a1928e9" in metrics["meta"]["data"]
  models = metrics["models"]
  for name in ("same", "other"):
    for metric in ("fid", "sfid", "fid_vs_reference_stats",
                   "sfid_vs_reference_stats", "kid", "precision", "mauve"):
      assert metric in models[name], (name, metric)
      assert np.isfinite(models[name][metric]["value"])
  # Crops of the same photo are closer to the real crops than another
  # photo's, in every Fréchet score.
  for metric in ("fid", "sfid", "fid_vs_reference_stats"):
    assert models["same"][metric]["value"] < models["other"][metric]["value"]
  # Against the real set's own statistics, FID(ref, real stats) is the
  # row-level FID: the two agree for the same features.
  assert first["models"]["same"]["fid"]["value"] == models["same"]["fid"][
      "value"]
  with open(os.path.join(workdir, "report.md")) as f:
    text = f.read()
  assert "sfid" in text and "Feature space: FID Inception pool3" in text
  # The sample grids show the user's own images, read row by row.
  for model in ("same", "other"):
    grid = [f for f in os.listdir(workdir)
            if f.startswith("samples_") and f.endswith(f"_{model}_least_real.png")]
    assert len(grid) == 1 and grid[0] in text, model
    assert os.path.getsize(os.path.join(workdir, grid[0])) > 2000
  assert "No images of same" not in text
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f)["families"]["image_scores"]["metrics"]


def _cached_real(tmp_path):
  """The real folder's features, from the embedding cache of the run."""
  cache = tmp_path / "cache"
  entries = sorted(cache.glob("*.npz"), key=os.path.getmtime)
  for entry in entries:
    with np.load(entry) as f:
      meta = json.loads(str(f["__metadata__"]))
      if meta["images"].startswith("real"):
        return entry
  raise AssertionError(f"no cached real embedding among {entries}")
