"""The flow trainer's workdir: a run's identity and its orbax checkpoints.

  run.json          the run's identity (flow, objective, hyperparameters,
                    seed and a data fingerprint); a restart with another
                    identity fails instead of silently mixing two runs
  checkpoints/      orbax, every `checkpoint_every` steps and on exit
                    (normal end, KeyboardInterrupt or any error but a
                    non-finite loss, whose state is not saved)

`gendiag.flows.trainer.train` calls these; its metrics.jsonl goes through
`gendiag.jsonl`.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

# TrainConfig fields that may change between a run and its restart.
IDENTITY_EXEMPT = ("num_steps", "log_every", "checkpoint_every",
                   "max_to_keep")


def fingerprint(data, labels) -> str:
  """SHA-1 hex digest of the training data's bytes (and the labels')."""
  h = hashlib.sha1(np.ascontiguousarray(np.asarray(data)).tobytes())
  if labels is not None:
    h.update(np.ascontiguousarray(np.asarray(labels)).tobytes())
  return h.hexdigest()


def train_identity(config) -> dict:
  """The config's fields that must match to resume (JSON-ready).

  Args:
    config: a `trainer.TrainConfig` (any dataclass).
  """
  return {k: v for k, v in dataclasses.asdict(config).items()
          if k not in IDENTITY_EXEMPT}


def key_data(key) -> np.ndarray:
  """The raw bits of a typed (jax.random.key) or legacy uint32 key."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key)


def run_identity(flow, objective, config, key, data, labels) -> dict:
  """What run.json records: flow, objective, train config, key and data."""
  return json.loads(json.dumps({
      "flow": flow.to_dict(), "objective": objective.to_dict(),
      "train": train_identity(config),
      "key": key_data(key).tolist(),
      "data_shape": list(np.shape(data)), "data_sha1": fingerprint(
          data, labels)}))


def check_identity(path: str, identity: dict, *, train_defaults: dict):
  """Writes `identity` to `path` (run.json), or checks it matches the file.

  Args:
    path: the run.json file.
    identity: `run_identity(...)` of the run about to start.
    train_defaults: `train_identity(TrainConfig())`: a run recorded before a
      TrainConfig field existed ran with its default (new fields default to
      the old behaviour).

  Raises:
    ValueError: the file records another run.
  """
  if not os.path.exists(path):
    with open(path, "w") as f:
      json.dump(identity, f, indent=1)
    return
  with open(path) as f:
    old = json.load(f)
  if isinstance(old.get("train"), dict):
    defaults = json.loads(json.dumps(train_defaults))
    old["train"] = {**defaults, **old["train"]}
  diffs = [k for k in identity if old.get(k) != identity[k]]
  if diffs:
    raise ValueError(
        f"{os.path.dirname(path)} holds a run with a different "
        f"{', '.join(diffs)} (see run.json); resuming would mix two runs. "
        "Use a fresh workdir or the original settings.")


def manager(workdir: str, *, max_to_keep: int) -> ocp.CheckpointManager:
  """The orbax manager of workdir/checkpoints, keeping `max_to_keep`."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


def restore_latest(mgr: ocp.CheckpointManager, state
                   ) -> Tuple[dict, Optional[int]]:
  """(the latest checkpoint's state, its step), or (state, None) if none.

  Args:
    mgr: a `manager(...)`.
    state: a state of the checkpoint's structure (restored into).
  """
  latest = mgr.latest_step()
  if latest is None:
    return state, None
  state = mgr.restore(latest, args=ocp.args.StandardRestore(state))
  return state, int(state["step"])


def save(mgr: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` as checkpoint `step`."""
  mgr.save(step, args=ocp.args.StandardSave(state))


def close(mgr: Optional[ocp.CheckpointManager], writer) -> None:
  """Waits for pending saves, then closes the manager and the log writer."""
  if mgr is not None:
    mgr.wait_until_finished()
    mgr.close()
  if writer is not None:
    writer.close()
