"""The flow trainer: optax, jitted steps, JSON-lines log, orbax checkpoints.

`train(flow, objective, data, labels, key=, config=, workdir=)` minimises any
`losses.Objective`. Step t is a pure function of (state, t): its minibatch
indices and sampling keys come from fold_in(split(key)[1], t), so the run is a
deterministic sequence of states. Steps run in jitted `lax.fori_loop` chunks whose
boundaries are the multiples of `log_every` and `checkpoint_every` (absolute,
not relative to a restart), so a resumed run executes exactly the chunks of an
uninterrupted one and ends on bitwise-identical parameters.

One step (critic objectives first take `critic_steps` critic steps, each on
a fresh data batch and fresh flow samples):

  critic:  phi <- phi - adam(grad_phi critic_loss)
  flow:    theta <- theta - adam(clip(grad_theta flow_loss, grad_clip))

A fresh (not resumed) run of a critic objective first takes
`critic_warmup_steps` critic steps against the initial flow, so the flow's
first steps follow a fitted ratio estimate rather than an untrained critic
(fine-tuning a pretrained flow from a random critic moved it away from the
data on the 2-D ring; with a warm critic the PR trade-off appears).

The only I/O of the flows package lives here and in `checkpoints` (run.json,
the run's identity, and orbax checkpoints/), in `workdir`:

  metrics.jsonl     one JSON line per `log_every` steps (`gendiag.jsonl`):
                    the mean of the per-step metrics since the previous line
                    (over `steps_averaged` steps: fewer in the first line
                    after a resume from a step between two lines) and
                    steps/second; lines past the restored step are dropped
                    on resume

A non-finite loss or parameter stops training with `NonFiniteLossError`,
naming the step and the last checkpoint.
"""

import dataclasses
import os
import time
from typing import Callable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from gendiag import jsonl
from gendiag.flows import checkpoints
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import train_step

class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss or parameters."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of `train`.

  Attributes:
    num_steps: flow optimiser steps (total, counting resumed ones).
    batch_size: data rows per step (drawn with replacement).
    learning_rate: Adam learning rate of the flow.
    critic_learning_rate: Adam learning rate of the critic.
    critic_weight_decay: decoupled weight decay of the critic (AdamW,
      Loshchilov & Hutter 2019; 0 for plain Adam). A critic fitted on a
      few thousand rows memorises them: its ratio then pulls the flow's
      samples onto the training rows instead of towards the data's
      density.
    critic_steps: critic steps per flow step (critic objectives only).
    critic_warmup_steps: critic steps before the first flow step of a fresh
      run (critic objectives only; 0 for none).
    grad_clip: global-norm clip of the flow gradient; 0 disables it.
    log_every: steps between metrics lines and progress logs.
    checkpoint_every: steps between checkpoints (with a workdir).
    max_to_keep: checkpoints kept.
  """
  num_steps: int = 1000
  batch_size: int = 256
  learning_rate: float = 1e-3
  critic_learning_rate: float = 1e-3
  critic_weight_decay: float = 0.0
  critic_steps: int = 2
  critic_warmup_steps: int = 0
  grad_clip: float = 1.0
  log_every: int = 100
  checkpoint_every: int = 500
  max_to_keep: int = 2

  def __post_init__(self):
    for name in ("num_steps", "batch_size", "critic_steps", "log_every",
                 "checkpoint_every", "max_to_keep"):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value}.")
    value = self.critic_warmup_steps
    if int(value) != value or value < 0:
      raise ValueError(f"`critic_warmup_steps` must be an integer >= 0; got "
                       f"{value}.")
    for name in ("learning_rate", "critic_learning_rate"):
      if not getattr(self, name) > 0:
        raise ValueError(f"`{name}` must be > 0; got {getattr(self, name)}.")
    for name in ("grad_clip", "critic_weight_decay"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"`{name}` must be >= 0; got {getattr(self, name)}.")


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train` returns.

  Attributes:
    params: the flow's final parameters.
    critic_params: the critic's final parameters ({} without a critic).
    step: steps done (== config.num_steps).
    metrics: the last logged metrics line (read from the workdir's log when
      a finished run is resumed at its end).
    resumed_from: the checkpoint step the run restarted from, or None.
    objective: the objective as trained (with `prepare`'s defaults).
  """
  params: dict
  critic_params: dict
  step: int
  metrics: dict
  resumed_from: Optional[int]
  objective: losses.Objective


def _boundaries(start, config):
  """Chunk ends after `start`: multiples of log/checkpoint periods, the end."""
  ends = set()
  for period in (config.log_every, config.checkpoint_every):
    ends.update(range((start // period + 1) * period, config.num_steps,
                      period))
  ends.add(config.num_steps)
  return sorted(e for e in ends if e > start)


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree))


def train(flow: models.Flow, objective: losses.Objective, data, labels=None,
          *, key: jax.Array, config: TrainConfig = TrainConfig(),
          workdir: Optional[str] = None, init_params=None,
          hook: Optional[Callable[[int, dict], None]] = None) -> TrainResult:
  """Trains `flow` on `data` by minimising `objective` (module docstring).

  Args:
    flow: the model (with its data normaliser set, e.g.
      `flow.normalized_for(data)`).
    objective: a `losses.Objective` (`losses.make_objective`); `prepare`
      is applied to the data first.
    data: (n, d) training array, d = flow.dim.
    labels: (n,) int labels in [0, flow.num_classes) for a conditional flow.
    key: PRNG key: initialisation, minibatches and samples (the seed).
    config: TrainConfig.
    workdir: directory for run.json, metrics.jsonl and checkpoints/; a
      checkpoint there is resumed. None: in memory only.
    init_params: starting flow parameters (e.g. an MLE fit to fine-tune);
      ignored when resuming.
    hook: called as hook(step, state) after every chunk (tests use it to
      interrupt a run).

  Returns:
    TrainResult.

  Raises:
    ValueError: bad data, labels or a workdir holding another run.
    NonFiniteLossError: the loss or parameters became NaN/inf.
  """
  models.check_data(data, flow.dim)
  models.check_labels(flow, data, labels)
  if not isinstance(objective, losses.Objective):
    raise ValueError(f"`objective` must be a losses.Objective (see "
                     f"losses.make_objective); got {type(objective)}.")
  objective = objective.prepare(data)
  data = jnp.asarray(data, jnp.float32)
  labels = None if labels is None else jnp.asarray(labels, jnp.int32)
  state = train_step.init_state(flow, objective, config, key, init_params)
  start, resumed_from, manager, writer = 0, None, None, None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    checkpoints.check_identity(
        os.path.join(workdir, "run.json"),
        checkpoints.run_identity(flow, objective, config, key, data, labels),
        train_defaults=checkpoints.train_identity(TrainConfig()))
    manager = checkpoints.manager(workdir, max_to_keep=config.max_to_keep)
    state, resumed_from = checkpoints.restore_latest(manager, state)
    if resumed_from is not None:
      start = resumed_from
      logging.info("flow trainer: resumed from step %d in %s", start, workdir)
      if start > config.num_steps:
        raise ValueError(f"{workdir} holds a checkpoint at step {start}, past "
                         f"num_steps={config.num_steps}.")
    writer = jsonl.JsonLinesWriter(os.path.join(workdir, "metrics.jsonl"),
                                   truncate_after=start)
  run = train_step.make_chunk(flow, objective, config)
  key_steps = jax.random.split(key)[1]
  saved_step = start if resumed_from is not None else None
  last_metrics, pending = {}, []
  tick, tick_step = time.perf_counter(), start

  def save(s, st):
    nonlocal saved_step
    if manager is not None and saved_step != s:
      checkpoints.save(manager, s, st)
      saved_step = s

  step = start
  warming = (resumed_from is None and objective.uses_critic
             and config.critic_warmup_steps > 0)
  try:
    if warming:
      t0 = time.perf_counter()
      state, closses = train_step.make_critic_warmup(flow, objective, config)(
          state, data, labels, jax.random.split(key, 3)[2])
      closses = np.asarray(closses)
      if not np.all(np.isfinite(closses)):
        raise NonFiniteLossError(
            "flow training: the critic's loss became NaN/inf during its "
            "warm-up; lower critic_learning_rate.")
      warming = False
      logging.info("flow trainer: critic warm-up, %d steps (%.1f s): critic "
                   "loss %.4g -> %.4g", config.critic_warmup_steps,
                   time.perf_counter() - t0, float(np.mean(closses[:10])),
                   float(np.mean(closses[-10:])))
    for end in _boundaries(start, config):
      new_state, metrics = run(state, data, labels, key_steps,
                               jnp.int32(step), jnp.int32(end))
      metrics = {k: np.asarray(v)[:end - step] for k, v in metrics.items()}
      bad = ~np.isfinite(metrics["loss"])
      if bad.any() or not _all_finite(new_state["params"]):
        first = step + int(np.argmax(bad)) if bad.any() else end
        raise NonFiniteLossError(
            f"flow training: the loss or parameters became NaN/inf at step "
            f"{first} (objective {objective.name}); the last good checkpoint "
            f"is step {saved_step}. Lower the learning rate, raise grad_clip "
            "or narrow the critic's ratio_range.")
      state, step = new_state, end
      pending.append(metrics)
      if step % config.checkpoint_every == 0:
        save(step, state)
      if step % config.log_every == 0 or step == config.num_steps:
        now = time.perf_counter()
        last_metrics = {k: float(np.mean(np.concatenate(
            [np.atleast_1d(m[k]) for m in pending]))) for k in pending[0]}
        last_metrics["steps_averaged"] = step - tick_step
        last_metrics["steps_per_second"] = (step - tick_step) / (now - tick)
        tick, tick_step, pending = now, step, []
        if writer is not None:
          writer.write_scalars(step, last_metrics)
        logging.info("flow step %d/%d: loss %.5g (%.1f steps/s)", step,
                     config.num_steps, last_metrics["loss"],
                     last_metrics["steps_per_second"])
      if hook is not None:
        hook(step, state)
  except NonFiniteLossError:
    checkpoints.close(manager, writer)
    raise
  except BaseException:
    if not warming:  # an interrupted warm-up restarts from scratch
      save(step, state)  # on exit: the last completed chunk's state
    checkpoints.close(manager, writer)
    raise
  save(step, state)
  checkpoints.close(manager, writer)
  if not last_metrics and workdir is not None:
    # A finished run resumed at its end: the last line it logged.
    last_metrics = jsonl.last_line(os.path.join(workdir, "metrics.jsonl"))
    last_metrics.pop("step", None)
  return TrainResult(params=state["params"],
                     critic_params=state.get("critic_params", {}), step=step,
                     metrics=last_metrics, resumed_from=resumed_from,
                     objective=objective)
