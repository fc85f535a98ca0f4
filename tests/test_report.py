"""Report writing: tables, verdicts, metrics.json, and index.html in a browser."""

import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.report import render


def _outputs():
  out = report.FamilyOutput()
  out.metrics = {"a": {"score": report.entry(0.5, ci=(0.4, 0.6))},
                 "b": {"score": report.entry(float("nan"))}}
  out.figures["score.png"] = report.bar_chart("score", ["a", "b"], [0.5, 0.1])
  out.findings = {"b": ["drops classes 3 and 8"]}
  out.notes = ["a note"]
  return {"fam": out}


@pytest.fixture
def written(tmp_path):
  inputs = EvalInputs(
      real=np.zeros((5, 2), np.float32),
      generated={"a": np.zeros((5, 2), np.float32),
                 "b": np.ones((5, 2), np.float32)},
      failures={"b": "drops 3 and 8"})
  report.write_report(str(tmp_path), inputs, _outputs(), {"seed": 0})
  return tmp_path


def test_metrics_json_and_markdown(written):
  metrics = json.load(open(written / "metrics.json"))
  assert metrics["models"]["a"]["score"] == {"value": 0.5, "ci": [0.4, 0.6]}
  assert metrics["models"]["b"]["score"]["value"] is None  # NaN -> null
  assert metrics["verdicts"]["b"] == "drops classes 3 and 8 (fam)."
  assert metrics["verdicts"]["a"].startswith("no failure detected")
  text = open(written / "report.md").read()
  assert "| a | 0.5 [0.4, 0.6] |" in text
  assert "| b | drops 3 and 8 | drops classes 3 and 8 (fam). |" in text
  assert "![fam](score.png)" in text


def test_entry_and_table_formatting():
  e = report.entry(np.float32(1234567.0), ci=None, std=np.float32(2.0))
  assert e == {"value": 1234567.0, "ci": None, "std": 2.0}
  assert render.format_number(1.2e-7) == "1.200e-07"
  assert report.markdown_table(["m"], {}) == ""


def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    path = shutil.which(name)
    if path:
      return path
  return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium installed")
def test_index_html_images_load_in_headless_chromium(written):
  checker = written / "check.html"
  checker.write_text("""<html><body><iframe id="r" src="index.html"></iframe>
<script>
document.getElementById('r').onload = () => {
  const imgs = [...document.getElementById('r').contentDocument.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const out = document.createElement('pre');
  out.id = 'result';
  out.textContent = 'IMAGES ' + ok + '/' + imgs.length;
  document.body.appendChild(out);
};
</script></body></html>""")
  proc = subprocess.run(
      [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
       "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       "--allow-file-access-from-files", "--virtual-time-budget=10000",
       f"--user-data-dir={written / 'profile'}", "--dump-dom",
       f"file://{checker}"], capture_output=True, text=True, timeout=120,
      check=False)
  assert "IMAGES 1/1" in proc.stdout, (proc.stdout[-2000:], proc.stderr[-2000:])


def test_broken_image_is_detected(written):
  """The browser check can fail: a missing PNG is not counted as loaded."""
  if _chromium() is None:
    pytest.skip("no chromium installed")
  os.remove(written / "score.png")
  with pytest.raises(AssertionError):
    test_index_html_images_load_in_headless_chromium(written)


# --------------------------------------------------------------------------
# Capped families: a seeded random subsample, never the first rows.


def test_subsample_is_seeded_nested_and_shared_by_name():
  inputs = EvalInputs(real=np.zeros((50, 2), np.float32),
                      generated={}, config={"seed": 4})
  small = report.subsample_index(inputs, "m", 50, 10)
  large = report.subsample_index(inputs, "m", 50, 30)
  assert len(set(small)) == 10 and set(small) <= set(large)
  np.testing.assert_array_equal(small, report.subsample_index(
      inputs, "m", 50, 10))                      # reproducible
  assert report.subsample_index(inputs, "m", 50, 50) is None
  assert not np.array_equal(small, np.arange(10))  # not the first rows
  other = EvalInputs(real=inputs.real, generated={}, config={"seed": 5})
  assert not np.array_equal(small, report.subsample_index(other, "m", 50, 10))
  x, labels = np.arange(50.0)[:, None], np.arange(50)
  sub_x, sub_labels = report.subsample_rows(inputs, "m", 10, x, labels)
  np.testing.assert_array_equal(sub_x[:, 0], sub_labels)  # labels follow rows


def _class_sorted_inputs(cap):
  """A good model (same mixture as real) shuffled and sorted by class."""
  rng = np.random.default_rng(0)
  centres = rng.normal(scale=5.0, size=(5, 4))
  draw = lambda n: (lambda lab: (np.float32(centres[lab] + rng.normal(
      size=(n, 4))), lab))(rng.integers(0, 5, n))
  real, real_labels = draw(300)
  good, good_labels = draw(300)
  order = np.argsort(good_labels, kind="stable")
  config = {"seed": 0,
            "mmd": dict(num_permutations=50, num_resamples=20,
                        max_samples=cap),
            "kid": dict(num_subsets=10, subset_size=100, num_resamples=20,
                        max_samples=cap),
            "gel": dict(num_witnesses=8, num_permutations=19,
                        num_resamples=2, max_samples=cap)}
  return EvalInputs(
      real=real, real_labels=real_labels,
      generated={"shuffled": good, "sorted": good[order]},
      generated_labels={"shuffled": good_labels,
                        "sorted": good_labels[order]}, config=config)


def test_class_sorted_good_model_gets_the_shuffled_verdict():
  """Issue 18.1: the first 100 rows of a class-sorted file are two classes."""
  inputs = _class_sorted_inputs(cap=100)
  outputs = report.run_families(inputs, jax.random.key(0), "mmd,kid,gel",
                                registry=report.REGISTRY)
  verdicts = report.verdicts(list(inputs.generated), outputs)
  assert verdicts["sorted"] == verdicts["shuffled"], verdicts
  assert verdicts["sorted"].startswith("no failure detected"), verdicts
  kid = {m: outputs["kid"].metrics[m]["kid"] for m in inputs.generated}
  for e in kid.values():   # both intervals hold 0 (a perfect model)
    assert e["ci"][0] <= 0.0 <= e["ci"][1], kid
  for family, metric in (("mmd", "mmd2"), ("kid", "kid"),
                         ("gel", "gel_mode_dropping")):
    e = outputs[family].metrics["sorted"][metric]
    assert e["rows_used"] == [100, 100]
    assert any("seeded random subsample of 100 rows" in n
               for n in outputs[family].notes), family


def test_references_are_shown_beside_the_values(tmp_path):
  ref = report.entry(0.01, ci=(0.0, 0.02))
  out = report.FamilyOutput()
  out.metrics = {
      "a": {"s": report.entry(0.5, ci=(0.4, 0.6), reference=ref,
                              rows_used=[5, 4]),
            "t": report.entry(1.0, reference=report.entry(2.0))},
      "b": {"s": report.entry(0.7, ci=(0.6, 0.8), reference=ref,
                              rows_used=[5, 5]),
            "t": report.entry(1.5, reference=report.entry(3.0))}}
  inputs = EvalInputs(real=np.zeros((5, 2), np.float32),
                      generated={"a": np.zeros((4, 2), np.float32),
                                 "b": np.ones((5, 2), np.float32)})
  report.write_report(str(tmp_path), inputs, {"fam": out}, {"seed": 0})
  saved = json.load(open(tmp_path / "metrics.json"))
  assert saved["models"]["a"]["s"]["reference"] == {"value": 0.01,
                                                    "ci": [0.0, 0.02]}
  text = open(tmp_path / "report.md").read()
  # A reference shared by every model: one row; per-model ones: inline.
  assert "| a | 0.5 [0.4, 0.6] | 1 (real vs real: 2) | 5 / 4 |" in text
  assert (f"| {report.REFERENCE_ROW} | 0.01 [0, 0.02] | beside each value |  |"
          in text)
  html = open(tmp_path / "index.html").read()
  assert report.REFERENCE_ROW in html and "real vs real: 2" in html
  assert "rows used (real / model)" in html


def test_precision_recall_family_runs_on_sets_smaller_than_prd_clusters():
  """12 generated rows < prd_clusters = 20: PRD uses 12 clusters, says so."""
  rng = np.random.default_rng(0)
  inputs = EvalInputs(
      real=rng.normal(size=(40, 4)).astype(np.float32),
      generated={"tiny": rng.normal(size=(12, 4)).astype(np.float32)},
      config={"precision_recall": {"classifier_runs": 1,
                                   "classifier_steps": 20,
                                   "num_resamples": 20}})
  out = report.run_families(inputs, jax.random.key(0), "precision_recall",
                            registry=report.REGISTRY)["precision_recall"]
  f8 = out.metrics["tiny"]["prd_f8"]
  assert f8["value"] is not None and 0.0 <= f8["value"] <= 1.0
  assert any("uses 12 clusters" in n for n in out.notes), out.notes
