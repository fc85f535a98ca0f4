"""End-to-end tests of experiments/train_flow.py on its smoke configs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import train_flow as train_flow_config
from gendiag.experiments import train_flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_KEYS = {"improved_precision", "improved_recall", "prdc_precision",
             "prdc_recall", "density", "coverage", "prd_f8", "prd_f1_8",
             "held_out_nll"}


def _check_outputs(workdir, dim, n):
  report = json.load(open(os.path.join(workdir, "metrics.json")))
  assert EVAL_KEYS <= set(report["eval"])
  for key in EVAL_KEYS - {"density", "held_out_nll"}:
    assert 0.0 <= report["eval"][key] <= 1.0, key
  assert np.isfinite(report["eval"]["held_out_nll"])
  assert len(report["prd_curve"]["precision"]) == 1001
  samples = np.load(os.path.join(workdir, "samples.npz"))
  assert samples["samples"].shape == samples["real"].shape == (n, dim)
  assert os.path.getsize(os.path.join(workdir, "pr.png")) > 1000
  assert os.path.exists(os.path.join(workdir, "samples.png")) == (dim == 2)
  assert os.path.exists(os.path.join(workdir, "train", "metrics.jsonl"))
  return report, samples


@pytest.mark.slow  # smoke-size end to end (tens of seconds of compiles)
def test_binary_runs_the_ring_smoke_config(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_flow.py"),
         f"--workdir={tmp_path}",
         f"--config={os.path.join(ROOT, 'configs', 'train_flow.py')}"
         ":ring,smoke"]
  subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
  report, _ = _check_outputs(tmp_path, 2, 200)
  assert report["meta"]["objective"]["objective"] == "mle"
  assert report["train"]["loss"] == pytest.approx(report["train"]["nll"])
  bad = subprocess.run(cmd + ["--config.objective.nonexistent=1"],
                       capture_output=True, cwd=tmp_path)
  assert bad.returncode != 0


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_grid_pr_weighted_mle_resumes_to_the_same_samples(tmp_path):
  config = train_flow_config.get_config("grid,smoke")
  config.objective.update(name="fdiv_weighted_mle", divergence="pr", lam=2.0)
  config.flow.kind = "affine"
  first = train_flow.run(config, str(tmp_path))
  _, samples = _check_outputs(tmp_path, 2, 200)
  assert first["meta"]["objective"]["divergence"]["lam"] == 2.0
  assert "mean_weight" in first["train"]
  again = train_flow.run(config, str(tmp_path))
  assert again["meta"]["resumed_from"] == config.train.num_steps
  np.testing.assert_array_equal(
      np.load(tmp_path / "samples.npz")["samples"], samples["samples"])
  assert again["eval"] == first["eval"]
  assert again["train"] == first["train"]


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_digits_conditional_adversarial_pr_with_pretraining(tmp_path):
  config = train_flow_config.get_config("digits,smoke")
  config.objective.update(name="fdiv_adversarial", divergence="pr", lam=0.5)
  config.flow.conditional = True
  config.train.pretrain_mle_steps = 10
  config.eval.mauve = True
  report = train_flow.run(config, str(tmp_path))
  _check_outputs(tmp_path, 64, 539)
  assert 0.0 < report["eval"]["mauve"] <= 1.0
  assert report["meta"]["flow"]["num_classes"] == 10
  assert os.path.exists(tmp_path / "pretrain" / "metrics.jsonl")
  assert "critic_bound" in report["train"]


@pytest.mark.parametrize("override, match", [
    (dict(name="fdiv_adversarial", lam=0.0), "`lam` must be > 0"),
    (dict(name="fdiv_weighted_mle", lam=-2.0), "`lam` must be > 0"),
    (dict(name="fdiv_adversarial", divergence="wasserstein"),
     "unknown f-divergence"),
    (dict(name="gan"), "unknown objective"),
])
def test_bad_configs_fail_before_training(tmp_path, override, match):
  config = train_flow_config.get_config("ring,smoke")
  config.objective.update(**override)
  with pytest.raises(ValueError, match=match):
    train_flow.run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "train")


def test_config_variants():
  assert train_flow_config.get_config().data.name == "ring"
  digits = train_flow_config.get_config("digits")
  assert digits.data.name == "digits" and digits.train.num_steps > 100
  assert train_flow_config.get_config("grid,smoke").train.num_steps <= 50
  with pytest.raises(ValueError, match="unknown config options"):
    train_flow_config.get_config("ring,fast")


def test_tiny_ring_flow_trains_and_writes_its_files(tmp_path):
  """The library entry end to end in the default suite (like flax's
  train_test.py): a tiny MLE flow on the ring, a few chunks of steps."""
  config = train_flow_config.get_config("ring,smoke")
  config.data.update(num_train=256, num_test=100)
  config.flow.update(num_layers=2, hidden_sizes=(8,), num_bins=4)
  config.train.update(num_steps=30, batch_size=64, learning_rate=3e-3,
                      log_every=10, checkpoint_every=30)
  config.eval.update(prd_num_clusters=5, prd_num_runs=1, mauve=False)
  report = train_flow.run(config, str(tmp_path))
  _check_outputs(tmp_path, 2, 100)
  with open(tmp_path / "train" / "metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  assert [line["step"] for line in lines] == [10, 20, 30]
  losses = [line["loss"] for line in lines]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert report["train"]["loss"] == losses[-1]
  assert os.path.isdir(tmp_path / "train" / "checkpoints")
