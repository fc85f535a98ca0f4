"""The "image_scores" report family: sFID, the Inception Score and FID / sFID
against reference statistics, each equal to the direct library call."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from gendiag import io
from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.data.inputs import FrechetReference
from gendiag.metrics import frechet
from gendiag.metrics import frechet_delta
from gendiag.metrics import inception_score as is_lib
from gendiag.ops import intervals
from gendiag.report import sampling
from gendiag.report.families import image_scores


def _relu(rng, n, d, shift=0.0):
  z = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
  return np.float32(np.maximum(z + 0.5 + shift, 0.0) + rng.uniform(size=(n, d)))


@pytest.fixture(scope="module")
def family_output(tmp_path_factory):
  rng = np.random.default_rng(0)
  path = str(tmp_path_factory.mktemp("ref") / "VIRTUAL_small.npz")
  io.save_adm_reference(path, pool3=_relu(rng, 400, 6),
                        spatial=_relu(rng, 400, 12), dims=None)
  inputs = EvalInputs(
      real=_relu(rng, 120, 6),
      generated={"good": _relu(rng, 40, 6), "shifted": _relu(rng, 40, 6, 0.4)},
      real_spatial=_relu(rng, 120, 12),
      # More rows than features: delta-method intervals (the bootstrap's
      # are tested below).
      generated_spatial={"good": _relu(rng, 40, 12),
                         "shifted": _relu(rng, 40, 12, 0.4)},
      real_logits=np.float32(rng.normal(size=(120, 7)) * 3),
      generated_logits={"good": np.float32(rng.normal(size=(40, 7)) * 3),
                        "shifted": np.float32(rng.normal(size=(40, 7)))},
      reference=io.load_reference(path),
      feature_space="test pool3 (6)",
      config={"image_scores": {"num_resamples": 8}})
  return inputs, image_scores.image_scores_family(inputs, jax.random.key(1))


def _contains(entry):
  lo, hi = entry["ci"]
  return lo <= entry["value"] <= hi


def test_entries_equal_the_direct_calls(family_output):
  inputs, out = family_output
  assert set(out.metrics) == {"good", "shifted"}
  for name in ("good", "shifted"):
    entries = out.metrics[name]
    assert set(entries) == {"sfid", "inception_score",
                            "fid_vs_reference_stats", "sfid_vs_reference_stats"}
    sfid = frechet.fid(inputs.real_spatial, inputs.generated_spatial[name])
    np.testing.assert_allclose(entries["sfid"]["value"], sfid.fid, rtol=1e-5)
    np.testing.assert_allclose(entries["sfid"]["mean_term"], sfid.mean_term,
                               rtol=1e-5)
    logits = inputs.generated_logits[name]
    score = entries["inception_score"]
    np.testing.assert_allclose(score["value"],
                               is_lib.inception_score(logits).mean, rtol=1e-6)
    np.testing.assert_allclose(score["adm"], is_lib.inception_score(
        logits, convention="adm").mean, rtol=1e-6)
    np.testing.assert_allclose(score["improved_gan"], is_lib.inception_score(
        logits, convention="improved_gan").mean, rtol=1e-6)
    assert score["num_splits"] == 10
    ref = inputs.reference
    for metric, stats, x in (
        ("fid_vs_reference_stats", ref.features, inputs.generated[name]),
        ("sfid_vs_reference_stats", ref.spatial,
         inputs.generated_spatial[name])):
      want = frechet.fid_from_stats(stats, frechet.frechet_stats(x)).fid
      np.testing.assert_allclose(entries[metric]["value"], want, rtol=1e-5)
    for entry in entries.values():
      assert _contains(entry), entry
  # The shifted model is farther from the real data than the good one.
  assert (out.metrics["shifted"]["fid_vs_reference_stats"]["value"]
          > out.metrics["good"]["fid_vs_reference_stats"]["value"])


def test_references_notes_and_figures(family_output):
  inputs, out = family_output
  good = out.metrics["good"]
  # sFID's reference: a seeded split of the real spatial features.
  assert np.isfinite(good["sfid"]["reference"]["value"])
  assert any("sfid reference (n = 40)" in n and "split" in n
             for n in out.notes)
  # IS's reference: the same score of 40 real rows.
  real, = sampling.subsample_rows(inputs, "real logits", 40,
                                         inputs.real_logits)
  np.testing.assert_allclose(good["inception_score"]["reference"]["value"],
                             is_lib.inception_score(real).mean, rtol=1e-6)
  assert any("VIRTUAL_small.npz" in n and "test pool3 (6)" in n
             for n in out.notes)
  assert any("inception_score" in n and "7 classes" in n for n in out.notes)
  assert any("sfid" in n and "(12 per image)" in n for n in out.notes)
  assert set(out.figures) == {"sfid.png", "inception_score.png"}


def test_interval_against_fixed_statistics_is_the_generated_side_of_fid_se():
  """With a huge real set FID's standard error is the generated side's."""
  rng = np.random.default_rng(5)
  real, gen = _relu(rng, 40_000, 5), _relu(rng, 300, 5, shift=0.3)
  stats = frechet.frechet_stats(real)
  both = frechet_delta.fid_standard_error(real, gen)
  inputs = EvalInputs(real=real[:50], generated={"m": gen},
                      reference=FrechetReference(features=stats))
  entry = image_scores.image_scores_family(
      inputs, jax.random.key(0)).metrics["m"]["fid_vs_reference_stats"]
  se = (entry["ci"][1] - entry["value"]) / intervals.z_value(0.95)
  np.testing.assert_allclose(entry["value"], both.fid, rtol=1e-4)
  np.testing.assert_allclose(se, both.fid_se, rtol=0.03)
  # The bootstraps: of the generated rows against fixed statistics, and
  # sFID's of both sets.
  spatial = {"real_spatial": _relu(rng, 50, 5), "generated_spatial": {
      "m": _relu(rng, 300, 5, shift=0.3)}}
  boot = image_scores.image_scores_family(
      dataclasses.replace(inputs, config={"image_scores": {
          "interval": "bootstrap", "num_resamples": 40}}, **spatial),
      jax.random.key(0)).metrics["m"]
  vs_stats = boot["fid_vs_reference_stats"]
  boot_se = (vs_stats["ci"][1] - vs_stats["value"]) / intervals.z_value(0.95)
  assert 0.5 * se < boot_se < 2.0 * se
  np.testing.assert_allclose(boot["sfid"]["value"], frechet.fid(
      spatial["real_spatial"], spatial["generated_spatial"]["m"]).fid,
                             rtol=1e-5)
  assert _contains(boot["sfid"]) and _contains(boot["sfid"]["reference"])
  assert boot["sfid"]["ci"][1] > boot["sfid"]["ci"][0]


def test_skipped_without_spatial_logits_or_reference(rng):
  inputs = EvalInputs(real=_relu(rng, 20, 4), generated={"m": _relu(rng, 20, 4)})
  for flag in ("spatial", "logits", "reference"):
    assert not inputs.has(flag)
  out = report.run_families(inputs, jax.random.key(0), ["image_scores"],
                            registry=report.REGISTRY)["image_scores"]
  assert out.metrics == {} and "skipped" in out.notes[0]


def test_models_without_logits_are_named_and_logits_alone_work(rng):
  inputs = EvalInputs(
      real=_relu(rng, 20, 4), generated={"a": _relu(rng, 20, 4),
                                         "b": _relu(rng, 20, 4)},
      generated_logits={"a": np.float32(rng.normal(size=(20, 5)))})
  assert inputs.has("logits") and not inputs.has("spatial")
  out = image_scores.image_scores_family(inputs, jax.random.key(0))
  assert set(out.metrics) == {"a"} and set(out.metrics["a"]) == {
      "inception_score"}
  assert any("no inception_score for b" in n for n in out.notes)
  assert "reference" not in out.metrics["a"]["inception_score"]


def test_mismatched_reference_dimensions_raise(rng):
  stats = frechet.frechet_stats(_relu(rng, 30, 5))
  inputs = EvalInputs(real=_relu(rng, 20, 4), generated={"m": _relu(rng, 20, 4)},
                      reference=FrechetReference(features=stats))
  with pytest.raises(ValueError, match="same extractor"):
    image_scores.image_scores_family(inputs, jax.random.key(0))


def test_report_writes_strict_json(family_output, tmp_path):
  inputs, out = family_output
  report.write_report(str(tmp_path), inputs, {"image_scores": out}, {})
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert metrics["models"]["good"]["inception_score"]["adm"] > 1.0
  assert "fid_vs_reference_stats" in open(tmp_path / "report.md").read()
