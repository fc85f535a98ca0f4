"""The PR-divergence trade-off sweep (gendiag.flows.sweep) and its experiment.

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
from gendiag.data import flow_datasets
from gendiag.experiments import pr_tradeoff
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import sweep
from gendiag.flows import sweep_objectives
from gendiag.flows import trainer
from gendiag.ops import fdiv
from gendiag.ops import pr_curves


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pr_tradeoff"))
  config = experiment_config.get_config("smoke")
  payload = pr_tradeoff.run(config, workdir)
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
      # Every run but MLE trains a critic in the smoke config.
      assert (r["critic_gap"] is None) == (r["objective"] == "mle"), r
    assert f"## {name}" in table
  for lam in config.lams:
    assert f"| PR | {lam:g} |" in table
  assert "| MLE |" in table and "| reverse KL |" in table
  assert stored == json.loads(json.dumps(payload))


def test_digits_are_pca_features():
  train, test, info = flow_datasets.load_split("digits", key=jax.random.key(0),
                                               pca_dim=4, test_fraction=0.4)
  assert train.shape[1] == test.shape[1] == info["dim"] == 4
  assert train.shape[0] + test.shape[0] == 1797
  assert abs(test.shape[0] - 0.4 * 1797) < 20
  assert 0 < info["explained_variance"] <= 1
  # PCA is fitted on train: its projection is centred there.
  np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-3)


@pytest.mark.parametrize("lam", [0.3, 0.7, 1.0, 2.5, 10.0])
def test_centred_pr_is_the_pr_divergence_and_bounded(lam):
  # Same divergence as f_lam on discrete P, Q (one with a state Q misses),
  # bounded in [-1, 1] and flat where lam u >= 1.
  pr = fdiv.get("pr", lam=lam)
  centred = sweep_objectives.CentredPR(lam=lam)
  for p, q in (([0.1, 0.2, 0.3, 0.4], [0.35, 0.3, 0.15, 0.2]),
               ([0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.0, 0.0])):
    p, q = np.asarray(p), np.asarray(q)
    np.testing.assert_allclose(pr_curves.f_divergence(p, q, centred),
                               pr_curves.f_divergence(p, q, pr), atol=1e-6)
  assert float(centred.f(1.0)) == 0.0
  u = np.geomspace(1e-6, 1e6, 49)
  values = np.asarray(centred.f(u))
  assert np.all(np.abs(values) <= 1.0)
  np.testing.assert_array_equal(values[lam * u >= 1], values[-1])


def test_by_side_form_picks_the_estimator_of_each_side():
  settings = sweep_objectives.ObjectiveSettings(form="by_side",
                                                critic_hidden_sizes=(8,))
  recall_side = settings.make("pr", 0.3)
  assert isinstance(recall_side, losses.WeightedMaximumLikelihood)
  assert recall_side.divergence.lam == 0.3
  for lam in (1.0, 3.0):
    precision_side = settings.make("pr", lam)
    assert isinstance(precision_side, losses.AdversarialFDivergence)
    assert isinstance(precision_side.divergence, sweep_objectives.CentredPR)
  assert isinstance(settings.make("reverse_kl"),
                    losses.AdversarialFDivergence)
  assert isinstance(settings.make("mle"), losses.MaximumLikelihood)
  with pytest.raises(ValueError, match="unknown objective form"):
    sweep_objectives.ObjectiveSettings(form="sideways")


def test_critic_gap_flags_a_critic_that_memorised_its_rows():
  # 16 training rows of the ring: a wide critic fitted for 1,500 steps
  # against the flow puts a much higher ratio on them than on fresh rows
  # of the same ring; the untrained critic does not; MLE has no critic.
  train, test, _ = flow_datasets.load_split("ring", key=jax.random.key(3),
                                            num_train=16, num_test=500)
  flow = models.Flow(dim=2, num_layers=2, hidden_sizes=(16,)).normalized_for(
      train)
  objective = sweep_objectives.ObjectiveSettings(
      form="adversarial", critic_hidden_sizes=(64, 64),
      critic_fourier_features=0).make("pr", 1.0)
  params = flow.init(jax.random.key(0))
  gaps = {}
  for steps in (1, 1500):
    config = trainer.TrainConfig(num_steps=1, batch_size=16,
                                 learning_rate=1e-9, critic_steps=1,
                                 critic_learning_rate=3e-3,
                                 critic_warmup_steps=steps)
    fit = trainer.train(flow, objective, train, key=jax.random.key(1),
                        config=config, init_params=params)
    gaps[steps] = sweep.critic_gap(objective, flow, fit.critic_params,
                                   train, test)
  assert gaps[1500] > 0.5 and abs(gaps[1]) < 0.2, gaps  # 0.74, -0.10
  assert np.isnan(sweep.critic_gap(losses.make_objective("mle"), flow,
                                   {}, train, test))


def _result(precision, recall, mle_recall, n=1000):
  # PR runs at lam = 0.1, 1, 10 (values in that order), then MLE.
  r = 4
  col = lambda v: np.asarray(v, np.float32)[:, None]
  return sweep.TradeoffResult(
      lams=np.asarray([0.1, 1.0, 10.0, np.nan]),
      precision=col(list(precision) + [0.5]),
      recall=col(list(recall) + [mle_recall]),
      prd_precision=np.zeros((r, 3), np.float32),
      prd_recall=np.zeros((r, 3), np.float32),
      prd_f_beta=col([0.0] * r), prd_f_inv_beta=col([0.0] * r),
      final_loss=col([0.0] * r), critic_gap=col([0.0] * (r - 1) + [np.nan]),
      samples=np.zeros((r, n, 2), np.float32),
      pretrained_precision=np.zeros(1), pretrained_recall=np.zeros(1),
      dataset="toy", objectives=("pr",) * (r - 1) + ("mle",),
      labels=("a",) * r, k=3, num_seeds=1)


def test_is_monotone_strict_within_noise_and_end_to_end():
  # 2 standard errors at n = 1000 and p ~ 0.97 are ~0.015.
  strict = sweep.is_monotone(_result([0.6, 0.8, 0.9], [0.98, 0.95, 0.85],
                                     0.96))
  assert all(strict.values()), strict
  # A 0.008 step against the trend near recall 0.98: noise, not a failure.
  noisy = sweep.is_monotone(_result([0.6, 0.8, 0.9], [0.973, 0.981, 0.85],
                                    0.96))
  assert not noisy["recall_falls"] and noisy["recall_falls_within_noise"]
  assert noisy["recall_falls_end_to_end"]
  # A 0.1 step against the trend is a failure either way; equal ends are no
  # end-to-end trade-off; MLE below a lam > 1 run is off the recall side.
  broken = sweep.is_monotone(_result([0.6, 0.5, 0.605], [0.9, 0.95, 0.9],
                                     0.8))
  assert not broken["precision_rises_within_noise"]
  assert not broken["precision_rises_end_to_end"]
  assert not broken["recall_falls_within_noise"]
  assert not broken["recall_falls_end_to_end"]
  assert not broken["mle_on_recall_side"]
  # More rows, smaller noise: the same 0.008 step now counts.
  assert not sweep.is_monotone(_result(
      [0.6, 0.8, 0.9], [0.973, 0.981, 0.85], 0.96,
      n=20000))["recall_falls_within_noise"]


def test_per_dataset_overrides_replace_fields_and_num_seeds():
  config = experiment_config.get_config("")
  digits, ring = (pr_tradeoff.merged_settings(config, n)
                  for n in ("digits", "ring"))
  assert digits["num_seeds"] == 3 and ring["num_seeds"] == config.num_seeds
  assert digits["objective"]["critic_hidden_sizes"] == (64, 64)
  assert digits["objective"]["auxiliary"] == config.objective.auxiliary
  assert digits["finetune"]["critic_weight_decay"] == 0.2
  assert digits["finetune"]["critic_steps"] == config.finetune.critic_steps
  assert ring["finetune"]["critic_weight_decay"] == 0.0
  config.overrides.ring = {"optimizer": {"lr": 1.0}}
  with pytest.raises(ValueError, match="overrides.ring.optimizer"):
    pr_tradeoff.merged_settings(config, "ring")


def test_bad_settings_fail_before_training():
  x = np.zeros((50, 2), np.float32) + np.arange(50)[:, None]
  with pytest.raises(ValueError, match="lams"):
    sweep.pr_tradeoff_sweep(x, x, key=jax.random.key(0), lams=(0.0,))
  with pytest.raises(ValueError, match="baselines"):
    sweep.pr_tradeoff_sweep(x, x, key=jax.random.key(0), lams=(1.0,),
                            baselines=("gan",))
  with pytest.raises(ValueError, match="features"):
    sweep.pr_tradeoff_sweep(x, np.zeros((50, 3)), key=jax.random.key(0))
  with pytest.raises(ValueError, match="dataset"):
    flow_datasets.load_split("moons", key=jax.random.key(0))


@pytest.mark.slow
def test_ring_tradeoff_direction():
  """Precision at the largest lam > at the smallest; recall the reverse."""
  config = experiment_config.get_config("")
  train, test, _ = flow_datasets.load_split("ring", key=jax.random.key(1),
                                            num_train=2000, num_test=600)
  flow_cfg = config.flow.to_dict()
  flow_cfg["hidden_sizes"] = tuple(flow_cfg["hidden_sizes"])
  result = sweep.pr_tradeoff_sweep(
      train, test, key=jax.random.key(2), lams=(0.1, 10.0), baselines=(),
      flow=models.Flow(dim=2, **flow_cfg),
      pretrain=trainer.TrainConfig(**config.pretrain.to_dict()),
      finetune=trainer.TrainConfig(**config.finetune.to_dict()),
      objective=sweep_objectives.ObjectiveSettings.from_dict(
          config.objective.to_dict()),
      prd_clusters=10, prd_runs=2, dataset="ring")
  precision = np.asarray(result.precision)[:, 0]
  recall = np.asarray(result.recall)[:, 0]
  assert precision[1] > precision[0], (precision, recall)
  assert recall[1] < recall[0], (precision, recall)
