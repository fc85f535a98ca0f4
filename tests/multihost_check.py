"""One process of the two-process run of test_multihost.py.

Usage: python -m tests.multihost_check PROCESS_ID PORT OUT_JSON

Two of these run on this machine (127.0.0.1 only), two forced CPU devices
each, joined by `jax.distributed.initialize`. Each holds half of the rows of
every set, assembles global arrays with
`jax.make_array_from_process_local_data` (the README's recipe) and calls the
metrics on them eagerly, eagerly with `mesh=` and under `jax.jit` with
`mesh=`. It writes the gathered results to OUT_JSON; the test compares them
with single-process numbers. Families that cannot take such arrays must
raise a ValueError saying so; their messages are written too.
"""

import json
import sys

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

import gendiag

N, M, DIM = 24, 20, 5   # global rows: multiples of the 4 devices
KERNEL = gendiag.Gaussian(1.3)
FLD_OPTIONS = dict(max_epochs=3, batch_size=16, block_size=8)


def data():
  """The full sets, the same in every process (and in the test)."""
  rng = np.random.default_rng(0)
  real = np.float32(rng.normal(size=(N, DIM)))
  fake = np.float32(rng.normal(size=(M, DIM)) + 0.3)
  train = np.float32(rng.normal(size=(N, DIM)))
  return real, fake, train


def calls(real, fake, train, mesh):
  """name -> function of (real, fake, train): the metrics under test."""
  key = jax.random.key(0)
  return {
      "mmd": lambda r, f, t: gendiag.mmd(r, f, kernel=KERNEL, mesh=mesh),
      "mmd_median": lambda r, f, t: gendiag.mmd(r, f, mesh=mesh),
      "mmd_test": lambda r, f, t: gendiag.mmd_test(
          r, f, key=key, kernel=KERNEL, num_permutations=20, mesh=mesh),
      "kid": lambda r, f, t: gendiag.kid(
          r, f, key=key, num_subsets=6, subset_size=8, mesh=mesh),
      "prdc": lambda r, f, t: gendiag.prdc(r, f, k=(3, 5), block_size=8,
                                           mesh=mesh),
      "improved_precision_recall": lambda r, f, t: (
          gendiag.improved_precision_recall(r, f, k=3, block_size=8,
                                            mesh=mesh)),
      "fld": lambda r, f, t: gendiag.fld(t, r, f, key=key, mesh=mesh,
                                         **FLD_OPTIONS),
  }


def fetch(a):
  """A leaf's global value as a float or nested list, on every process."""
  if a.ndim == 0:  # a scalar must be readable where it is: replicated
    assert a.is_fully_replicated, a.sharding
    return float(a)
  return np.asarray(multihost_utils.process_allgather(a, tiled=True)).tolist()


def as_dict(result):
  """The array fields of a result (or a bare array), fetched."""
  if isinstance(result, jax.Array):
    return {"value": fetch(result)}
  return {name: fetch(getattr(result, name))
          for name in result.__dataclass_fields__
          if isinstance(getattr(result, name), jax.Array)}


def loopback_collectives():
  """Gloo over 127.0.0.1: its default is the address of the host name."""
  # pylint: disable=g-import-not-at-top
  from jax._src import distributed
  from jax._src import xla_bridge
  from jax._src.lib import _jax

  def factory():
    return xla_bridge.make_cpu_client(
        collectives=_jax.make_gloo_tcp_collectives(
            distributed_client=distributed.global_state.client,
            hostname="127.0.0.1"))

  xla_bridge.register_backend_factory("cpu", factory, priority=0,
                                      fail_quietly=False)


def main():
  process_id, port, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  jax.config.update("jax_num_cpu_devices", 2)
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}", num_processes=2,
      process_id=process_id, initialization_timeout=60)
  loopback_collectives()
  assert jax.device_count() == 4 and jax.local_device_count() == 2
  mesh = jax.make_mesh((4,), ("data",))
  rows = NamedSharding(mesh, PartitionSpec("data"))

  def global_array(full):
    half = full.shape[0] // 2
    local = full[process_id * half:(process_id + 1) * half]
    out = jax.make_array_from_process_local_data(rows, local)
    assert not out.is_fully_addressable and out.shape == full.shape
    return out

  sets = [global_array(a) for a in data()]
  out = {}
  for variant, jit in [("eager", False), ("jit", True)]:
    for name, fn in calls(*sets, mesh).items():
      if jit:
        fn = jax.jit(fn)
      print(variant, name, flush=True)
      out[f"{variant}/{name}"] = as_dict(fn(*sets))

  real, fake, train = sets
  nan_rows = data()[0].copy()
  nan_rows[[3, N - 2]] = np.nan  # one row in each process's half
  labels = np.arange(N) % 2
  key = jax.random.key(1)
  refused = {  # name -> a call that must raise ValueError
      "fid": lambda: gendiag.fid(real, fake),
      "divergence_frontier": lambda: gendiag.divergence_frontier(
          real, fake, key=key, num_clusters=3),
      "gel_test": lambda: gendiag.gel_test(real, fake, key=key,
                                           num_witnesses=8,
                                           num_permutations=5),
      "data_copying_test": lambda: gendiag.data_copying_test(
          train, real, fake, key=key, num_cells=2),
      "classification_accuracy_score": lambda: (
          gendiag.classification_accuracy_score(
              real, fake, real_labels=labels, generated_labels=labels[:M],
              test=real, test_labels=labels,
              key=key)),
      "mmd_without_mesh": lambda: gendiag.mmd(real, fake, kernel=KERNEL),
      "kid_other_keys": lambda: gendiag.kid(
          real, fake, key=jax.random.key(process_id), num_subsets=2,
          subset_size=8, mesh=mesh),
      "prdc_nan": lambda: gendiag.prdc(global_array(nan_rows), fake,
                                       mesh=mesh),
  }
  errors = {}
  for name, fn in refused.items():
    try:
      fn()
      errors[name] = None
    except ValueError as e:
      errors[name] = str(e)
  out["refused"] = errors
  with open(out_path, "w") as f:
    json.dump(out, f)
  print("multihost checks done", flush=True)


if __name__ == "__main__":
  main()
