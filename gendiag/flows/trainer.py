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

The only I/O of the flows package lives here, in `workdir`:

  run.json          the run's identity (flow, objective, hyperparameters,
                    seed and a data fingerprint); a restart with another
                    identity fails instead of silently mixing two runs
  metrics.jsonl     one JSON line per `log_every` steps: the mean of the
                    per-step metrics since the previous line (over
                    `steps_averaged` steps: fewer in the first line after a
                    resume from a step between two lines) and steps/second;
                    lines past the restored step are dropped on resume
  checkpoints/      orbax, every `checkpoint_every` steps and on exit
                    (normal end, KeyboardInterrupt or any error but a
                    non-finite loss, whose state is not saved)

A non-finite loss or parameter stops training with `NonFiniteLossError`,
naming the step and the last checkpoint.
"""

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Callable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from gendiag.flows import losses
from gendiag.flows import models

_IDENTITY_EXEMPT = ("num_steps", "log_every", "checkpoint_every",
                    "max_to_keep")


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


def _optimizers(config: TrainConfig):
  flow_opt = optax.adam(config.learning_rate)
  if config.grad_clip:
    flow_opt = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                           flow_opt)
  if config.critic_weight_decay:
    critic_opt = optax.adamw(config.critic_learning_rate,
                             weight_decay=config.critic_weight_decay)
  else:
    critic_opt = optax.adam(config.critic_learning_rate)
  return flow_opt, critic_opt


def init_state(flow, objective, config: TrainConfig, key, init_params=None):
  """The step-0 training state (a plain pytree)."""
  key_flow, key_critic = jax.random.split(jax.random.split(key)[0])
  params = flow.init(key_flow) if init_params is None else init_params
  flow_opt, critic_opt = _optimizers(config)
  state = {"params": params, "opt_state": flow_opt.init(params),
           "step": jnp.zeros((), jnp.int32)}
  if objective.uses_critic:
    critic_params = objective.init_critic(flow, key_critic)
    state["critic_params"] = critic_params
    state["critic_opt_state"] = critic_opt.init(critic_params)
  return state


def _batch_at(data, labels, key, batch_size):
  idx = jax.random.randint(key, (batch_size,), 0, data.shape[0])
  return losses.Batch(data[idx], None if labels is None else labels[idx])


def _critic_update(flow, objective, config: TrainConfig):
  """update(state, data, labels, key) -> (state, loss, aux): one critic step."""
  critic_opt = _optimizers(config)[1]
  critic_grad = jax.value_and_grad(objective.critic_loss, argnums=1,
                                   has_aux=True)

  def update(state, data, labels, key):
    kb, ks = jax.random.split(key)
    (closs, caux), cg = critic_grad(
        flow, state["critic_params"], state["params"],
        _batch_at(data, labels, kb, config.batch_size), ks)
    updates, cs = critic_opt.update(cg, state["critic_opt_state"],
                                    state["critic_params"])
    state = dict(state, critic_params=optax.apply_updates(
        state["critic_params"], updates), critic_opt_state=cs)
    return state, closs, caux

  return update


def make_step(flow, objective, config: TrainConfig):
  """step(state, data, labels, key, t) -> (state, metrics): one pure step."""
  flow_opt = _optimizers(config)[0]
  flow_grad = jax.value_and_grad(objective.flow_loss, argnums=1, has_aux=True)
  critic_update = _critic_update(flow, objective, config)

  def step(state, data, labels, key, t):
    key_t = jax.random.fold_in(key, t)
    key_batch, key_critic, key_flow = jax.random.split(key_t, 3)
    metrics = {}
    state = dict(state)
    if objective.uses_critic:
      for j in range(config.critic_steps):
        state, closs, caux = critic_update(
            state, data, labels, jax.random.fold_in(key_critic, j))
      metrics["critic_loss"] = closs
      metrics.update(caux)
    (loss, aux), grads = flow_grad(
        flow, state["params"], state.get("critic_params", {}),
        _batch_at(data, labels, key_batch, config.batch_size), key_flow)
    updates, state["opt_state"] = flow_opt.update(grads, state["opt_state"],
                                                  state["params"])
    state["params"] = optax.apply_updates(state["params"], updates)
    state["step"] = state["step"] + 1
    metrics.update(aux)
    metrics["loss"] = loss
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state, metrics

  return step


@functools.lru_cache(maxsize=16)
def make_critic_warmup(flow, objective, config: TrainConfig):
  """Jitted warmup(state, data, labels, key) -> (state, critic losses).

  `config.critic_warmup_steps` critic steps against the fixed flow.
  """
  critic_update = _critic_update(flow, objective, config)

  def warmup(state, data, labels, key):
    def body(s, k):
      s, closs, _ = critic_update(s, data, labels, k)
      return s, closs
    return jax.lax.scan(body, state, jax.random.split(
        key, config.critic_warmup_steps))

  return jax.jit(warmup)


@functools.lru_cache(maxsize=16)
def make_chunk(flow, objective, config: TrainConfig):
  """Jitted run(state, data, labels, key, start, stop): steps start..stop-1.

  A `lax.fori_loop` with traced bounds, so one compilation serves every
  chunk length; per-step metrics go to buffers of min(log_every,
  checkpoint_every) entries (the longest chunk), NaN past `stop - start`.
  Cached on its (hashable, frozen) arguments, so a resumed or repeated run
  in the same process reuses the compiled program.
  """
  step = make_step(flow, objective, config)
  size = min(config.log_every, config.checkpoint_every)

  def run(state, data, labels, key, start, stop):
    shapes = jax.eval_shape(step, state, data, labels, key, start)[1]
    buffers = jax.tree.map(lambda a: jnp.full((size,), jnp.nan, a.dtype),
                           shapes)

    def body(t, carry):
      s, buf = carry
      s, metrics = step(s, data, labels, key, t)
      buf = jax.tree.map(lambda b, v: b.at[t - start].set(v), buf, metrics)
      return s, buf

    return jax.lax.fori_loop(start, stop, body, (state, buffers))

  return jax.jit(run)


class MetricWriter:
  """JSON-lines metrics with CLU's `write_scalars` name (no TensorFlow)."""

  def __init__(self, path: str, *, truncate_after: Optional[int] = None):
    self._path = path
    if truncate_after is not None and os.path.exists(path):
      with open(path) as f:
        kept = [line for line in f
                if line.strip() and json.loads(line)["step"] <= truncate_after]
      with open(path, "w") as f:
        f.writelines(kept)
    self._file = open(path, "a")

  def write_scalars(self, step: int, scalars: dict):
    self._file.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._file.flush()

  def close(self):
    self._file.close()


def _fingerprint(data, labels) -> str:
  h = hashlib.sha1(np.ascontiguousarray(np.asarray(data)).tobytes())
  if labels is not None:
    h.update(np.ascontiguousarray(np.asarray(labels)).tobytes())
  return h.hexdigest()


def _train_identity(config: TrainConfig) -> dict:
  """The config's fields that must match to resume (JSON-ready)."""
  return {k: v for k, v in dataclasses.asdict(config).items()
          if k not in _IDENTITY_EXEMPT}


def _identity(flow, objective, config, key, data, labels) -> dict:
  return json.loads(json.dumps({
      "flow": flow.to_dict(), "objective": objective.to_dict(),
      "train": _train_identity(config),
      "key": _key_data(key).tolist(),
      "data_shape": list(np.shape(data)), "data_sha1": _fingerprint(
          data, labels)}))


def _key_data(key) -> np.ndarray:
  """The raw bits of a typed (jax.random.key) or legacy uint32 key."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key)


def _check_identity(path, identity):
  if not os.path.exists(path):
    with open(path, "w") as f:
      json.dump(identity, f, indent=1)
    return
  with open(path) as f:
    old = json.load(f)
  if isinstance(old.get("train"), dict):
    # A run recorded before a TrainConfig field existed ran with its default
    # (new fields default to the old behaviour).
    defaults = json.loads(json.dumps(_train_identity(TrainConfig())))
    old["train"] = {**defaults, **old["train"]}
  diffs = [k for k in identity if old.get(k) != identity[k]]
  if diffs:
    raise ValueError(
        f"{os.path.dirname(path)} holds a run with a different "
        f"{', '.join(diffs)} (see run.json); resuming would mix two runs. "
        "Use a fresh workdir or the original settings.")


def _check_labels(flow, data, labels):
  if flow.num_classes:
    if labels is None:
      raise ValueError("the flow is class-conditional; pass `labels`.")
    labels = np.asarray(labels)
    if labels.shape != (np.shape(data)[0],):
      raise ValueError(f"`labels` must have shape ({np.shape(data)[0]},); "
                       f"got {labels.shape}.")
    if labels.min() < 0 or labels.max() >= flow.num_classes:
      raise ValueError(f"`labels` must lie in [0, {flow.num_classes}); got "
                       f"[{labels.min()}, {labels.max()}].")
  elif labels is not None:
    raise ValueError("the flow is unconditional but `labels` were given; "
                     "build it with num_classes > 0 or drop the labels.")


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
  _check_labels(flow, data, labels)
  if not isinstance(objective, losses.Objective):
    raise ValueError(f"`objective` must be a losses.Objective (see "
                     f"losses.make_objective); got {type(objective)}.")
  objective = objective.prepare(data)
  data = jnp.asarray(data, jnp.float32)
  labels = None if labels is None else jnp.asarray(labels, jnp.int32)
  state = init_state(flow, objective, config, key, init_params)
  start, resumed_from, manager, writer = 0, None, None, None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    _check_identity(os.path.join(workdir, "run.json"),
                    _identity(flow, objective, config, key, data, labels))
    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.max_to_keep))
    latest = manager.latest_step()
    if latest is not None:
      state = manager.restore(latest, args=ocp.args.StandardRestore(state))
      start = resumed_from = int(state["step"])
      logging.info("flow trainer: resumed from step %d in %s", start, workdir)
      if start > config.num_steps:
        raise ValueError(f"{workdir} holds a checkpoint at step {start}, past "
                         f"num_steps={config.num_steps}.")
    writer = MetricWriter(os.path.join(workdir, "metrics.jsonl"),
                          truncate_after=start)
  run = make_chunk(flow, objective, config)
  key_steps = jax.random.split(key)[1]
  saved_step = start if resumed_from is not None else None
  last_metrics, pending = {}, []
  tick, tick_step = time.perf_counter(), start

  def save(s, st):
    nonlocal saved_step
    if manager is not None and saved_step != s:
      manager.save(s, args=ocp.args.StandardSave(st))
      saved_step = s

  step = start
  warming = (resumed_from is None and objective.uses_critic
             and config.critic_warmup_steps > 0)
  try:
    if warming:
      t0 = time.perf_counter()
      state, closses = make_critic_warmup(flow, objective, config)(
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
    _close(manager, writer)
    raise
  except BaseException:
    if not warming:  # an interrupted warm-up restarts from scratch
      save(step, state)  # on exit: the last completed chunk's state
    _close(manager, writer)
    raise
  save(step, state)
  _close(manager, writer)
  if not last_metrics and workdir is not None:
    last_metrics = _last_logged(os.path.join(workdir, "metrics.jsonl"))
  return TrainResult(params=state["params"],
                     critic_params=state.get("critic_params", {}), step=step,
                     metrics=last_metrics, resumed_from=resumed_from,
                     objective=objective)


def _last_logged(path) -> dict:
  """The last metrics line of a finished run resumed at its end ({} if none)."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  if not lines:
    return {}
  out = json.loads(lines[-1])
  out.pop("step", None)
  return out


def _close(manager, writer):
  if manager is not None:
    manager.wait_until_finished()
    manager.close()
  if writer is not None:
    writer.close()
