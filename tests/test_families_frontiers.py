"""The "frontiers" report family on small synthetic inputs."""

import json
import os

import jax
import numpy as np
import pytest

from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.data import synthetic
from gendiag.report.families import frontiers as frontiers_family

CONFIG = {"frontiers": dict(num_resamples=30, num_restarts=2, max_iters=100,
                            classifier_steps=150, null_splits=2)}


@pytest.fixture(scope="module")
def family_output():
  keys = jax.random.split(jax.random.key(0), 5)
  mix = synthetic.make_mixture(keys[0], num_classes=5, dim=8, separation=8.0)
  real, real_labels = synthetic.sample_mixture(keys[1], mix, 400)
  pool, pool_labels = synthetic.sample_mixture(keys[2], mix, 2000)
  good, _ = synthetic.imbalance_classes(keys[3], pool, pool_labels,
                                        np.ones(5), 400)
  dropped, _ = synthetic.drop_classes(keys[4], pool, pool_labels, [1, 2],
                                      400)
  inputs = EvalInputs(
      real=np.asarray(real), real_labels=np.asarray(real_labels),
      generated={"good": np.asarray(good), "dropped": np.asarray(dropped)},
      config=CONFIG)
  return inputs, frontiers_family.frontiers_family(inputs, jax.random.key(1))


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_family_scores_intervals_null_and_findings(family_output, tmp_path):
  inputs, out = family_output
  good, dropped = out.metrics["good"], out.metrics["dropped"]
  assert set(good) == {"mauve", "mauve_null", "frontier_integral", "fi_null",
                       "kl_model_to_real", "kl_real_to_model",
                       "missed_real_mass", "off_real_mass", "mauve_clf",
                       "fi_clf"}
  for row in (good, dropped):
    for metric in ("mauve", "frontier_integral", "mauve_clf", "fi_clf",
                   "kl_model_to_real", "kl_real_to_model", "missed_real_mass",
                   "off_real_mass", "mauve_null", "fi_null"):
      lo, hi = row[metric]["ci"]
      assert lo - 1e-6 <= row[metric]["value"] <= hi + 1e-6, metric
    assert row["mauve"]["reference"] == row["mauve_null"]
    assert row["frontier_integral"]["reference"] == row["fi_null"]
    assert row["mauve"]["num_clusters"] == 40
    assert row["mauve_null"] == good["mauve_null"]
  splits = good["mauve_null"]["splits"]
  assert len(splits) == 2
  np.testing.assert_allclose(good["mauve_null"]["value"], np.mean(splits))
  # Real against real scores near 1, and the good model as well as it.
  assert good["mauve_null"]["value"] > 0.85
  assert good["mauve"]["ci"][1] > 0.9 * good["mauve_null"]["value"]
  # The dropped model is below the good one and below the null's floor.
  assert dropped["mauve"]["value"] < good["mauve"]["value"] - 0.2
  assert dropped["mauve"]["ci"][1] < 0.9 * good["mauve_null"]["value"]
  # 2 of 5 equal classes dropped: ~40% of the real mass unmatched.
  assert 0.3 < dropped["missed_real_mass"]["value"] < 0.5
  assert dropped["off_real_mass"]["value"] < 0.05
  assert good["missed_real_mass"]["value"] < 0.05
  assert dropped["frontier_integral"]["value"] > good["frontier_integral"][
      "value"]
  assert dropped["fi_clf"]["value"] > good["fi_clf"]["value"] + 0.1
  # Dropping modes is missed real mass: the diversity side dominates.
  assert (dropped["kl_real_to_model"]["value"]
          > 2 * dropped["kl_model_to_real"]["value"])
  assert "good" not in out.findings
  assert "dropped" in out.findings
  assert "low diversity" in out.findings["dropped"][0]
  assert any("null baseline" in note for note in out.notes)
  report.write_report(str(tmp_path), inputs, {"frontiers": out}, {})
  assert os.path.getsize(tmp_path / "frontiers.png") > 10000
  saved = json.load(open(tmp_path / "metrics.json"))  # strict JSON
  assert saved["models"]["dropped"]["mauve"]["ci"] is not None
  assert "frontiers" in report.REGISTRY
