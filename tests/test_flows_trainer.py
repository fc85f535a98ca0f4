"""Tests of gendiag.flows.trainer: training, logging, checkpoints, resume."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.data import synthetic
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import trainer


def _ring(n=512, seed=0):
  x, labels = synthetic.ring(jax.random.key(seed), n, std=0.1)
  return np.asarray(x), np.asarray(labels)


def _flow(data, **kw):
  kw = {"dim": 2, "kind": "affine", "num_layers": 2, "hidden_sizes": (16,),
        **kw}
  return models.Flow(**kw).normalized_for(data)


def _leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) and la
  for u, v in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _read_log(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_mmd_loss_decreases_on_a_smoke_run(tmp_path):
  data, _ = _ring()
  flow = _flow(data)
  objective = losses.make_objective("mmd")
  config = trainer.TrainConfig(num_steps=60, batch_size=128,
                               learning_rate=1e-2, log_every=20,
                               checkpoint_every=60)
  result = trainer.train(flow, objective, data, key=jax.random.key(1),
                         config=config, workdir=str(tmp_path))
  prepared = result.objective
  assert prepared.bandwidth is not None  # the median heuristic was filled in
  evaluate = jax.jit(lambda p: prepared.mmd2(
      jnp.asarray(data), flow.sample(p, jax.random.key(9), 512)))
  before = float(evaluate(flow.init(jax.random.key(0))))
  after = float(evaluate(result.params))
  assert after < 0.5 * before, (before, after)
  log = _read_log(tmp_path)
  assert [line["step"] for line in log] == [20, 40, 60]
  assert log[-1]["mmd2"] < log[0]["mmd2"]
  assert all(line["steps_per_second"] > 0 for line in log)
  assert result.step == 60 and result.resumed_from is None


class _Interrupt(Exception):
  pass


def _interrupt_at(step):
  def hook(s, state):
    del state
    if s == step:
      raise _Interrupt
  return hook


@pytest.mark.parametrize("stop_at,warmup", [(5, 0), (6, 0), (5, 7)])
def test_resume_gives_bitwise_identical_parameters(tmp_path, stop_at, warmup):
  # A critic objective, so the critic's parameters and optimiser state are
  # checkpointed too. Interrupting at 5 restarts from the on-exit save
  # (5 is no checkpoint period); at 6 from the periodic checkpoint and the
  # on-exit save at the same step. With a critic warm-up, the resumed run
  # must not warm up again.
  data, _ = _ring(256)
  flow = _flow(data)
  objective = losses.make_objective("fdiv_weighted_mle", divergence="pr",
                                    lam=2.0, critic_hidden_sizes=(8,))
  config = trainer.TrainConfig(num_steps=10, batch_size=32, log_every=5,
                               checkpoint_every=3, critic_steps=1,
                               critic_warmup_steps=warmup)
  key = jax.random.key(3)
  straight = trainer.train(flow, objective, data, key=key, config=config,
                           workdir=str(tmp_path / "straight"))
  workdir = str(tmp_path / "resumed")
  with pytest.raises(_Interrupt):
    trainer.train(flow, objective, data, key=key, config=config,
                  workdir=workdir, hook=_interrupt_at(stop_at))
  resumed = trainer.train(flow, objective, data, key=key, config=config,
                          workdir=workdir)
  assert resumed.resumed_from == stop_at
  assert resumed.step == straight.step == 10
  _leaves_equal(resumed.params, straight.params)
  _leaves_equal(resumed.critic_params, straight.critic_params)
  # The log has each step once, with the uninterrupted run's losses where
  # both average the same steps (after a resume at 6, line 10 has 4 steps).
  log, ref = _read_log(workdir), _read_log(tmp_path / "straight")
  assert [line["step"] for line in log] == [5, 10]
  assert [line["steps_averaged"] for line in ref] == [5, 5]
  assert [line["steps_averaged"] for line in log] == [5, 10 - stop_at
                                                      if stop_at > 5 else 5]
  for a, b in zip(log, ref):
    if a["steps_averaged"] == b["steps_averaged"]:
      assert a["loss"] == b["loss"]


def test_critic_warmup_fits_the_critic_before_the_first_flow_step():
  # One flow step after 0 or 300 warm-up critic steps: the warm critic's
  # dual bound (logged at step 1, after that step's own critic step) is
  # higher, and MLE (no critic) ignores the setting.
  data, _ = _ring(512)
  flow = _flow(data)
  objective = _critic_objective()
  bounds, critics = {}, {}
  for warmup in (0, 300):
    config = trainer.TrainConfig(num_steps=1, batch_size=128, log_every=1,
                                 critic_steps=1, critic_learning_rate=3e-3,
                                 critic_warmup_steps=warmup)
    result = trainer.train(flow, objective, data, key=jax.random.key(0),
                           config=config)
    bounds[warmup] = result.metrics["critic_bound"]
    critics[warmup] = result.critic_params
  assert bounds[300] > bounds[0] + 0.05, bounds
  assert not np.array_equal(critics[0]["Dense_0"]["kernel"],
                            critics[300]["Dense_0"]["kernel"])
  _assert_mle_ignores(flow, data, critic_warmup_steps=50)


def _critic_objective():
  return losses.make_objective("fdiv", divergence="pr", lam=1.0,
                               auxiliary="jensen_shannon",
                               critic_hidden_sizes=(32, 32))


def _assert_mle_ignores(flow, data, **critic_settings):
  """MLE trains no critic: critic-only settings leave it bitwise unchanged."""
  config = trainer.TrainConfig(num_steps=2, batch_size=32)
  mle = losses.make_objective("mle")
  a = trainer.train(flow, mle, data, key=jax.random.key(0), config=config)
  b = trainer.train(flow, mle, data, key=jax.random.key(0),
                    config=dataclasses.replace(config, **critic_settings))
  _leaves_equal(a.params, b.params)


def test_critic_weight_decay_shrinks_only_the_critic():
  # The same warm-up with and without AdamW's decay: the decayed critic's
  # weights have a smaller norm; MLE (no critic) is bitwise unaffected.
  data, _ = _ring(512)
  flow = _flow(data)
  objective = _critic_objective()
  norms = {}
  for decay in (0.0, 1.0):
    config = trainer.TrainConfig(num_steps=1, batch_size=128, critic_steps=1,
                                 critic_learning_rate=3e-3,
                                 critic_warmup_steps=300,
                                 critic_weight_decay=decay)
    critic = trainer.train(flow, objective, data, key=jax.random.key(0),
                           config=config).critic_params
    norms[decay] = float(sum(np.sum(np.square(leaf)) for leaf in
                             jax.tree_util.tree_leaves(critic)))
  assert norms[1.0] < 0.9 * norms[0.0], norms
  _assert_mle_ignores(flow, data, critic_weight_decay=0.5)


def test_checkpoints_and_run_identity(tmp_path):
  data, _ = _ring(128)
  flow = _flow(data)
  objective = losses.make_objective("mle")
  config = trainer.TrainConfig(num_steps=4, batch_size=16, log_every=2,
                               checkpoint_every=2, max_to_keep=5)
  key = jax.random.key(0)
  first = trainer.train(flow, objective, data, key=key, config=config,
                        workdir=str(tmp_path))
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints")
                 if d.isdigit())
  assert steps == [2, 4]
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["objective"]["objective"] == "mle"
  # A finished run extended to more steps continues from its last state.
  longer = trainer.train(flow, objective, data, key=key,
                         config=dataclasses.replace(config, num_steps=6),
                         workdir=str(tmp_path))
  assert longer.resumed_from == 4 and longer.step == 6
  assert not np.array_equal(jax.tree.leaves(first.params)[0],
                            jax.tree.leaves(longer.params)[0])
  # Another seed, objective or data in the same workdir is refused.
  for kwargs in (dict(key=jax.random.key(1)),
                 dict(objective=losses.make_objective("mmd", bandwidth=1.0)),
                 dict(data=data[::-1].copy())):
    args = dict(flow=flow, objective=objective, data=data, key=key,
                config=config, workdir=str(tmp_path))
    args.update(kwargs)
    with pytest.raises(ValueError, match="resuming would mix two runs"):
      trainer.train(**args)
  # A run recorded before a TrainConfig field existed resumes when the field
  # is at its default, and is refused when it is not.
  with open(tmp_path / "run.json") as f:
    stored = json.load(f)
  del stored["train"]["critic_weight_decay"]
  with open(tmp_path / "run.json", "w") as f:
    json.dump(stored, f)
  resumed = trainer.train(flow, objective, data, key=key,
                          config=dataclasses.replace(config, num_steps=8),
                          workdir=str(tmp_path))
  assert resumed.resumed_from == 6 and resumed.step == 8
  with pytest.raises(ValueError, match="resuming would mix two runs"):
    trainer.train(flow, objective, data, key=key,
                  config=dataclasses.replace(config, num_steps=8,
                                             critic_weight_decay=0.1),
                  workdir=str(tmp_path))


def test_conditional_flow_trains_with_labels():
  data, labels = _ring(256)
  flow = _flow(data, num_classes=8)
  result = trainer.train(flow, losses.make_objective("mle"), data, labels,
                         key=jax.random.key(0),
                         config=trainer.TrainConfig(num_steps=30,
                                                    batch_size=64,
                                                    learning_rate=1e-2,
                                                    log_every=10))
  nll = lambda p: -float(jnp.mean(flow.log_prob(p, jnp.asarray(data),
                                                jnp.asarray(labels))))
  assert nll(result.params) < nll(flow.init(jax.random.key(0))) - 0.2


def test_bad_inputs_fail_at_start(tmp_path):
  data, labels = _ring(64)
  mle = losses.make_objective("mle")
  config = trainer.TrainConfig(num_steps=2, batch_size=8)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="dim=3"):
    trainer.train(models.Flow(dim=3), mle, data, key=key, config=config)
  conditional = models.Flow(dim=2, num_classes=8)
  with pytest.raises(ValueError, match="class-conditional; pass `labels`"):
    trainer.train(conditional, mle, data, key=key, config=config)
  with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
    trainer.train(models.Flow(dim=2, num_classes=4), mle, data, labels,
                  key=key, config=config)
  with pytest.raises(ValueError, match="unconditional"):
    trainer.train(models.Flow(dim=2), mle, data, labels, key=key,
                  config=config)
  with pytest.raises(ValueError, match="NaN or inf"):
    trainer.train(models.Flow(dim=2), mle, np.full((8, 2), np.nan), key=key,
                  config=config)
  with pytest.raises(ValueError, match="losses.Objective"):
    trainer.train(models.Flow(dim=2), "mle", data, key=key, config=config)
  for kwargs, match in ((dict(num_steps=0), "num_steps"),
                        (dict(learning_rate=0.0), "learning_rate"),
                        (dict(grad_clip=-1.0), "grad_clip"),
                        (dict(critic_weight_decay=-0.1),
                         "critic_weight_decay"),
                        (dict(critic_warmup_steps=-1), "critic_warmup_steps"),
                        (dict(critic_warmup_steps=1.5),
                         "critic_warmup_steps")):
    with pytest.raises(ValueError, match=match):
      trainer.TrainConfig(**kwargs)
  assert not os.listdir(tmp_path)  # nothing was written


@dataclasses.dataclass(frozen=True)
class _Diverging(losses.Objective):
  """Loss -b for one zero-initialised bias b; NaN once b > 5.5.

  With Adam at lr 1 and a constant gradient, b grows by 1 per step, so the
  loss of step 6 (0-based) is the first NaN.
  """
  name = "diverging"

  def flow_loss(self, flow, params, critic_params, batch, key):
    b = params["coupling_0"]["Dense_1"]["bias"][0]
    return jnp.where(b > 5.5, jnp.nan, -b), {}


def test_nan_loss_raises_naming_the_step(tmp_path):
  data, _ = _ring(64)
  config = trainer.TrainConfig(num_steps=10, batch_size=8, learning_rate=1.0,
                               grad_clip=0.0, log_every=5,
                               checkpoint_every=5)
  with pytest.raises(trainer.NonFiniteLossError,
                     match="NaN/inf at step 6.*checkpoint is step 5"):
    trainer.train(_flow(data), _Diverging(), data, key=jax.random.key(0),
                  config=config, workdir=str(tmp_path))
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints")
                 if d.isdigit())
  assert steps == [5]  # the non-finite state was not saved
