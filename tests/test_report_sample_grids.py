"""Sample grids and the 2-D map; the digits default's samples show its failures."""

import json
import os
import re

import jax
import numpy as np
import pytest

from configs import diagnose as diagnose_config
from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.experiments import diagnose
from gendiag.report import per_sample
from gendiag.report import registry
from gendiag.report import sample_grids


def test_pca_projection_matches_the_covariance_eigenvectors():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1]) + 4.0
  mean, comps, share = sample_grids.pca_projection(x)
  evals, evecs = np.linalg.eigh(np.cov(x.T))
  top = evecs[:, ::-1][:, :2]
  np.testing.assert_allclose(np.abs(comps.T @ top), np.eye(2), atol=1e-8)
  np.testing.assert_allclose(share, evals[::-1][:2] / evals.sum(), rtol=1e-8)
  np.testing.assert_allclose(mean, x.mean(0))
  assert np.all(comps[np.argmax(np.abs(comps), 0), [0, 1]] > 0)  # signed
  mean2, comps2, _ = sample_grids.pca_projection(-x)     # deterministic sign
  np.testing.assert_allclose(comps2, comps, atol=1e-8)
  with pytest.raises(ValueError, match="d >= 2"):
    sample_grids.pca_projection(x[:, :1])


def _col(name, side, higher, threshold=None):
  return registry.ColumnInfo(name, "test", side, higher, "test", threshold)


def _synthetic(with_images=True):
  """A model whose rows 0-2 copy train rows 7-9, row 3 is unrealistic, and
  whose real rows of class 1 are all uncovered."""
  rng = np.random.default_rng(1)
  real_labels = np.repeat([0, 1, 2], 10)
  out = registry.FamilyOutput()
  ratio = np.full(20, 0.9)
  ratio[:3] = 0.0
  realism = np.full(20, 2.0)
  realism[3] = 0.1
  out.add_column("m", _col("realism", "generated", False, 1.0), realism)
  out.add_column("m", _col("nn_ratio", "generated", False, 1 / 3), ratio)
  out.add_column("m", _col("nearest_train", "generated", None),
                 np.r_[7, 8, 9, np.zeros(17)])
  out.add_column("m", _col("gel_generated_weight", "generated", False),
                 np.linspace(0.5, 1.5, 10), rows=np.arange(0, 20, 2))
  out.add_column("m", _col("uncovered", "real", True, 0.5), real_labels == 1)
  images = {"real": rng.uniform(size=(30, 8, 8)),
            "train": rng.uniform(size=(12, 8, 8)),
            "m": rng.uniform(size=(20, 8, 8))} if with_images else {}
  inputs = EvalInputs(real=np.float32(rng.normal(size=(30, 3))),
                      generated={"m": np.float32(rng.normal(size=(20, 3)))},
                      real_labels=real_labels, images=images,
                      failures={"m": "copies"})
  return inputs, {"test": out}


def test_grids_are_chosen_by_their_columns_and_say_so():
  inputs, outputs = _synthetic()
  tables = per_sample.sample_tables(inputs, outputs)
  figures, text = sample_grids.sample_figures(inputs, tables)
  assert sorted(figures) == [f"samples_0_m_{k}.png" for k in (
      "copies", "gel", "least_real", "map", "uncovered")]
  for name in figures:
    assert f"]({name})" in text
  assert "3 of 20 samples" in text and "threshold 0.333" in text   # copies
  assert "1 of 20 samples are below the threshold 1" in text     # realism
  assert "10 of 30" in text and "0: 0%, 1: 100%, 2: 0%" in text  # uncovered
  assert "over the 10 rows GEL used" in text
  g = tables["m"]["generated"]
  np.testing.assert_array_equal(sorted(g.most_suspicious("nn_ratio", 3)),
                                [0, 1, 2])
  assert g.most_suspicious("realism", 1)[0] == 3
  high = g.most_suspicious("gel_generated_weight", 1)[0]
  assert high == 0                    # the smallest weight (row 0)


def test_without_images_the_grids_are_skipped_with_a_note():
  inputs, outputs = _synthetic(with_images=False)
  figures, text = sample_grids.sample_figures(
      inputs, per_sample.sample_tables(inputs, outputs))
  assert list(figures) == ["samples_0_m_map.png"]
  assert "image grids skipped" in text


def _referenced_images(workdir):
  md = open(os.path.join(workdir, "report.md")).read()
  html = open(os.path.join(workdir, "index.html")).read()
  return (re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md),
          re.findall(r'<img[^>]*src="([^"]+)"', html))


def test_every_referenced_image_exists(tmp_path):
  inputs, outputs = _synthetic()
  report.write_report(str(tmp_path), inputs, outputs, {"seed": 0})
  md, html = _referenced_images(str(tmp_path))
  assert sorted(md) == sorted(html) and any("samples_" in f for f in md)
  for f in md:
    assert os.path.getsize(tmp_path / f) > 1000, f
  meta = json.load(open(tmp_path / "metrics.json"))["meta"]
  assert meta["samples"]["file"] == "samples.json"
  assert set(meta["samples"]["figures"]) <= set(md)


# --------------------------------------------------------------------------
# Done means: the digits default's worst samples are its injected failures.


@pytest.fixture(scope="module")
def digits(smoke_run):
  workdir, _ = smoke_run
  config = diagnose_config.get_config("smoke")
  data_key, _ = jax.random.split(jax.random.key(config.seed))
  inputs = diagnose.build_inputs(config, data_key)   # the run's own inputs
  samples = json.load(open(os.path.join(workdir, "samples.json")))
  return workdir, inputs, samples["models"]


def _full(table, name):
  col = table["columns"][name]
  out = np.full(table["num_rows"], np.nan)
  out[col["rows"]] = [np.nan if v is None else v for v in col["values"]]
  return out


def test_digits_blurred_samples_rank_least_real(digits):
  _, _, models = digits
  realism = {m: _full(t["generated"], "realism") for m, t in models.items()}
  pooled = np.concatenate(list(realism.values()))
  owner = np.concatenate([[m] * len(v) for m, v in realism.items()])
  lowest = owner[np.argsort(pooled, kind="stable")[:len(realism["blurred"])]]
  assert np.mean(lowest == "blurred") > 0.4     # chance: 1 / 6 (smoke: 0.47)
  assert np.median(realism["blurred"]) < min(
      np.median(v) for m, v in realism.items() if m != "blurred")
  off = {m: np.mean(_full(t["generated"], "off_real_manifold"))
         for m, t in models.items()}
  assert off["blurred"] > 2 * max(v for m, v in off.items() if m != "blurred")


def test_digits_memorised_copies_pair_with_their_training_originals(digits):
  _, inputs, models = digits
  mem, train = inputs.images["memorized"], inputs.images["train"]
  same = np.all(mem.reshape(len(mem), 1, -1) == train.reshape(1, len(train),
                                                              -1), axis=-1)
  copied, source = same.any(1), same.argmax(1)
  assert copied.sum() == round(0.5 * len(mem))
  g = models["memorized"]["generated"]
  nearest = _full(g, "nearest_train").astype(int)
  np.testing.assert_array_equal(nearest[copied], source[copied])
  threshold = g["columns"]["nn_ratio"]["threshold"]
  flagged = _full(g, "nn_ratio") < threshold
  np.testing.assert_array_equal(flagged, copied)
  top = np.argsort(-_full(g, "memorization_score"))[:int(copied.sum())]
  assert copied[top].mean() > 0.95
  assert "![memorized copies](samples_4_memorized_copies.png)" in open(
      os.path.join(digits[0], "report.md")).read()


def test_digits_dropped_model_leaves_classes_3_and_8_uncovered(digits):
  _, inputs, models = digits
  uncovered = _full(models["dropped"]["real"], "uncovered") > 0.5
  labels = np.asarray(inputs.real_labels)
  assert np.isin(labels[uncovered], [3, 8]).mean() > 0.7   # 20% of real rows
  for c in (3, 8):
    assert uncovered[labels == c].mean() > 0.9
  good = _full(models["good"]["real"], "uncovered") > 0.5
  assert np.isin(labels[good], [3, 8]).mean() < 0.4


def test_digits_report_shows_each_models_grids_and_every_image_exists(digits):
  workdir, inputs, _ = digits
  md, html = _referenced_images(workdir)
  assert sorted(md) == sorted(html)
  for f in md:
    assert os.path.getsize(os.path.join(workdir, f)) > 1000, f
  for i, model in enumerate(inputs.generated):
    for kind in ("least_real", "uncovered", "gel", "map"):
      assert f"samples_{i}_{model}_{kind}.png" in md, (model, kind)
