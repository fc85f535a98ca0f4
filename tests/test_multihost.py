"""The README's multi-host recipe, run as two processes on this machine.

Two `tests.multihost_check` processes (CPU, two forced devices each, joined
by `jax.distributed.initialize` over 127.0.0.1) hold half of the rows each
and call the metrics on global arrays, eagerly and under `jax.jit`; their
numbers must equal this process's single-device ones, and the families that
cannot take global arrays must raise ValueError saying so.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import multihost_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _single_process():
  """The same calls on the full sets, one device, no mesh."""
  fns = multihost_check.calls(*multihost_check.data(), mesh=None)
  sets = multihost_check.data()
  out = {}
  for name, fn in fns.items():
    result = fn(*sets)
    if not hasattr(result, "__dataclass_fields__"):
      result = {"value": result}
    else:
      result = {n: getattr(result, n) for n in result.__dataclass_fields__}
    out[name] = {n: np.asarray(v) for n, v in result.items()
                 if hasattr(v, "dtype")}
  return out


def _run_workers(tmp_path):
  """Both processes' results and the single-process ones (computed while
  the processes run), or a failure with their output."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  port = str(_free_port())
  paths = [tmp_path / f"process{i}.json" for i in range(2)]
  logs = [open(tmp_path / f"process{i}.log", "w+") for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "tests.multihost_check", str(i), port,
       str(paths[i])], cwd=ROOT, env=env, stdout=logs[i],
      stderr=subprocess.STDOUT) for i in range(2)]
  try:
    reference = _single_process()
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  except subprocess.TimeoutExpired:
    codes = None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  output = []
  for log in logs:
    log.seek(0)
    output.append(log.read()[-3000:])
    log.close()
  assert codes == [0, 0], f"exit codes {codes}:\n" + "\n----\n".join(output)
  return [json.loads(p.read_text()) for p in paths], reference


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  return _run_workers(tmp_path_factory.mktemp("multihost"))


def test_global_arrays_match_single_process(results):
  (first, second), reference = results
  assert first == second  # every process sees the same global results
  for variant in ("eager", "jit"):
    for name, fields in reference.items():
      got = first[f"{variant}/{name}"]
      assert set(got) == set(fields), (variant, name)
      for field, want in fields.items():
        where = f"{variant}/{name}.{field}"
        value = np.asarray(got[field])
        assert value.shape == want.shape, where
        if want.dtype.kind in "biu":  # counts, flags, indices: exact
          np.testing.assert_array_equal(value, want, err_msg=where)
        else:
          np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6,
                                     err_msg=where)


@pytest.mark.parametrize("name", ["fid", "divergence_frontier", "gel_test",
                                  "data_copying_test",
                                  "classification_accuracy_score"])
def test_host_side_families_refuse_global_arrays(results, name):
  message = results[0][0]["refused"][name]
  assert message is not None, f"{name} accepted arrays it cannot handle"
  assert "does not support arrays spanning several processes" in message
  assert "process_allgather" in message


def test_global_array_errors_name_the_fix(results):
  refused = results[0][0]["refused"]
  assert "pass that mesh as mmd(..., mesh=mesh)" in refused["mmd_without_mesh"]
  assert "pass the same `key` on every process" in refused["kid_other_keys"]
  # The finiteness check runs where the rows live and finds both halves'.
  assert "NaN or inf in 2 rows (first: [3, 22])" in refused["prdc_nan"]
