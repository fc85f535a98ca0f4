"""Report writing: tables, verdicts, metrics.json, and index.html in a browser."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from gendiag import report


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
  inputs = report.EvalInputs(
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
  assert report._format(1.2e-7) == "1.200e-07"  # pylint: disable=protected-access
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
