"""The "gel" report family and the mode-dropping experiment (smoke config)."""

import json
import os

import jax
import numpy as np
import pytest

from configs import gel_mode_dropping as experiment_config
from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.data import synthetic
from gendiag.experiments import gel_mode_dropping as gel_experiment
from gendiag.report.families import gel as gel_family


@pytest.fixture(scope="module")
def family_output():
  keys = jax.random.split(jax.random.key(0), 5)
  mix = synthetic.make_mixture(keys[0], num_classes=5, dim=8, separation=8.0)
  real, real_labels = synthetic.sample_mixture(keys[1], mix, 400)
  pool, pool_labels = synthetic.sample_mixture(keys[2], mix, 2000)
  good, good_labels = synthetic.imbalance_classes(
      keys[3], pool, pool_labels, np.ones(5), 400)
  dropped, dropped_labels = synthetic.drop_classes(
      keys[4], pool, pool_labels, [1, 2], 400)
  inputs = EvalInputs(
      real=np.asarray(real), real_labels=np.asarray(real_labels),
      generated={"good": np.asarray(good), "dropped": np.asarray(dropped)},
      generated_labels={"good": np.asarray(good_labels)},  # dropped: k-NN
      config={"gel": dict(num_witnesses=16, num_permutations=19)})
  return inputs, gel_family.gel_family(inputs, jax.random.key(1))


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_family_reports_the_test_masses_table_and_figure(family_output,
                                                         tmp_path):
  inputs, out = family_output
  good, dropped = out.metrics["good"], out.metrics["dropped"]
  assert set(good) == {"gel_statistic", "gel_p_value", "gel_mode_dropping",
                       "gel_mode_recovery", "gel_dropped_classes",
                       "gel_max_class_divergence"}
  assert dropped["gel_p_value"]["value"] == pytest.approx(1 / 20)
  assert dropped["gel_statistic"]["value"] > good["gel_statistic"]["value"]
  assert (dropped["gel_mode_dropping"]["value"]
          > 3 * good["gel_mode_dropping"]["value"])
  assert dropped["gel_dropped_classes"]["classes"] == [1, 2]
  assert good["gel_dropped_classes"]["value"] == 0
  assert len(out.sections) == 2 and "| 1 |" in out.sections[1]
  assert any("k-NN" in note and "dropped" in note for note in out.notes)
  report.write_report(str(tmp_path), inputs, {"gel": out}, {})
  assert os.path.getsize(tmp_path / "gel_weights.png") > 5000
  json.load(open(tmp_path / "metrics.json"))  # strict JSON (no NaN/inf)


@pytest.mark.slow  # smoke-size end to end (tens of seconds of compiles)
def test_experiment_smoke_end_to_end(tmp_path):
  config = experiment_config.get_config("smoke")
  results = gel_experiment.run(config, str(tmp_path))
  res = results["datasets"]["mixture"]
  num_models = len(config.dropping_levels) + len(config.imbalance_levels)
  assert len(res["models"]) == num_models
  assert res["gel_statuses"] == {"solved": 2 * num_models}
  for family in ("dropping", "imbalance"):
    corr = res["correlations"][family]
    assert set(corr) == set(gel_experiment.METRICS)
    assert corr["gel_one_sample"]["spearman"] > 0.9
  lines = open(tmp_path / "metrics.jsonl").read().splitlines()
  assert len(lines) == num_models
  assert "gel_one_sample" in open(tmp_path / "table.md").read()
  assert os.path.getsize(tmp_path / "gel_mode_dropping.png") > 10000
  saved = json.load(open(tmp_path / "results.json"))
  assert saved["datasets"]["mixture"]["comparison"]["imbalance"]["spearman"][
      "gel"] is not None


def test_a_model_off_the_real_data_gets_its_own_finding_not_class_findings():
  """Issue 18: a blurred model (noise of 4 sd added to good samples) whose
  one-sample GEL solve is infeasible. The old family said "gives classes
  0, 1, 2 almost no GEL mass (dropped)" from the last iterate of the
  failed solve."""
  keys = jax.random.split(jax.random.key(0), 4)
  mix = synthetic.make_mixture(keys[0], num_classes=4, dim=4, separation=6.0)
  real, real_labels = synthetic.sample_mixture(keys[1], mix, 240)
  fake, fake_labels = synthetic.sample_mixture(keys[2], mix, 240)
  blurred = np.asarray(fake) + 4.0 * np.asarray(
      jax.random.normal(keys[3], fake.shape))
  inputs = EvalInputs(
      real=np.asarray(real), real_labels=np.asarray(real_labels),
      generated={"blurred": blurred},
      generated_labels={"blurred": np.asarray(fake_labels)},
      config={"gel": dict(num_witnesses=16, num_permutations=9,
                          num_resamples=2)})
  out = gel_family.gel_family(inputs, jax.random.key(1))
  metrics, table = out.metrics["blurred"], out.sections[0]
  assert metrics["gel_mode_dropping"]["status"] == "infeasible"
  assert out.findings["blurred"] == [gel_family.OFF_DATA_FINDING]
  for name in ("gel_mode_dropping", "gel_mode_recovery",
               "gel_dropped_classes"):
    assert metrics[name]["value"] is None and metrics[name]["ci"] is None
  assert metrics["gel_dropped_classes"]["classes"] is None
  assert "failed solve (infeasible)" in table and "dropped" not in table
  assert any("not converged for: blurred" in note for note in out.notes)
  # The two-sample test still rejects as strongly as 9 relabellings allow.
  assert metrics["gel_p_value"]["value"] == pytest.approx(1 / 10)
