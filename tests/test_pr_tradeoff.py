"""The PR-divergence trade-off sweep (gendiag/flows/tradeoff.py) and its binary.

The smoke config runs end to end through `experiment` (files, table rows);
a small real sweep on the ring checks the direction of the trade-off
(precision up, recall down from the smallest to the largest lam), which
fails if the PR-divergence objective does not steer the flow.
"""

import json
import os

import jax
import numpy as np
import pytest

from configs import pr_tradeoff as experiment_config
from gendiag.flows import models
from gendiag.flows import trainer
from gendiag.flows import tradeoff


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pr_tradeoff"))
  config = experiment_config.get_config("smoke")
  payload = tradeoff.experiment(config, workdir)
  return config, workdir, payload


@pytest.mark.slow  # ~3 min: eight flow compiles; notebook d runs a sweep in CI
def test_smoke_writes_every_file(smoke_run):
  _, workdir, _ = smoke_run
  for name in ("tradeoff.json", "tradeoff.md", "tradeoff.png", "samples.png",
               "metrics.jsonl"):
    path = os.path.join(workdir, name)
    assert os.path.getsize(path) > 0, name
  with open(os.path.join(workdir, "tradeoff.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_smoke_table_has_every_run(smoke_run):
  config, workdir, payload = smoke_run
  with open(os.path.join(workdir, "tradeoff.json")) as f:
    stored = json.load(f)
  assert stored["datasets"].keys() == set(config.datasets)
  with open(os.path.join(workdir, "tradeoff.md")) as f:
    table = f.read()
  for name in config.datasets:
    runs = stored["datasets"][name]["runs"]
    assert [r["lam"] for r in runs if r["objective"] == "pr"] == list(
        config.lams)
    assert [r["objective"] for r in runs if r["objective"] != "pr"] == list(
        config.baselines)
    for r in runs:
      assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
      assert np.isfinite(r["final_loss"])
    assert f"## {name}" in table
  for lam in config.lams:
    assert f"| PR | {lam:g} |" in table
  assert "| MLE |" in table and "| reverse KL |" in table
  assert stored == json.loads(json.dumps(payload))


def test_digits_are_pca_features():
  train, test, info = tradeoff.load_dataset("digits", key=jax.random.key(0),
                                            pca_dim=4, test_fraction=0.4)
  assert train.shape[1] == test.shape[1] == info["dim"] == 4
  assert train.shape[0] + test.shape[0] == 1797
  assert abs(test.shape[0] - 0.4 * 1797) < 20
  assert 0 < info["explained_variance"] <= 1
  # PCA is fitted on train: its projection is centred there.
  np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-3)


def test_bad_settings_fail_before_training():
  x = np.zeros((50, 2), np.float32) + np.arange(50)[:, None]
  with pytest.raises(ValueError, match="lams"):
    tradeoff.pr_tradeoff_sweep(x, x, key=jax.random.key(0), lams=(0.0,))
  with pytest.raises(ValueError, match="baselines"):
    tradeoff.pr_tradeoff_sweep(x, x, key=jax.random.key(0), lams=(1.0,),
                               baselines=("gan",))
  with pytest.raises(ValueError, match="features"):
    tradeoff.pr_tradeoff_sweep(x, np.zeros((50, 3)), key=jax.random.key(0))
  with pytest.raises(ValueError, match="dataset"):
    tradeoff.load_dataset("moons", key=jax.random.key(0))


@pytest.mark.slow
def test_ring_tradeoff_direction():
  """Precision at the largest lam > at the smallest; recall the reverse."""
  config = experiment_config.get_config("")
  train, test, _ = tradeoff.load_dataset("ring", key=jax.random.key(1),
                                         num_train=2000, num_test=600)
  flow_cfg = config.flow.to_dict()
  flow_cfg["hidden_sizes"] = tuple(flow_cfg["hidden_sizes"])
  result = tradeoff.pr_tradeoff_sweep(
      train, test, key=jax.random.key(2), lams=(0.1, 10.0), baselines=(),
      flow=models.Flow(dim=2, **flow_cfg),
      pretrain=trainer.TrainConfig(**config.pretrain.to_dict()),
      finetune=trainer.TrainConfig(**config.finetune.to_dict()),
      prd_clusters=10, prd_runs=2, dataset="ring")
  precision = np.asarray(result.precision)[:, 0]
  recall = np.asarray(result.recall)[:, 0]
  assert precision[1] > precision[0], (precision, recall)
  assert recall[1] < recall[0], (precision, recall)
