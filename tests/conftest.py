"""Shared fixtures. float64 references are computed with numpy, not JAX.

The tests run on small arrays, so XLA compilation, not execution, is most of
their time. They compile with XLA's backend (LLVM) optimisation level 0,
which cuts compile time by about a third and the suite's time by about a
quarter; the kernels' speed is measured by experiments/benchmark.py, never
by tests. Set the flag in XLA_FLAGS yourself to test at another level. The
setting reaches subprocesses and notebook kernels through the environment.
"""

import os

import numpy as np
import pytest

_OPT_FLAG = "--xla_backend_optimization_level"
if _OPT_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + f" {_OPT_FLAG}=0").strip()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
  """(workdir, metrics.json) of the main job's smoke config, run once.

  Shared by the tests of the report (test_experiments_diagnose, test_intervals) so the
  default suite pays for one end-to-end run.
  """
  from configs import diagnose as diagnose_config  # pylint: disable=g-import-not-at-top
  from gendiag.experiments import diagnose  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("diag"))
  config = diagnose_config.get_config("smoke")
  return workdir, diagnose.run(config, workdir)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def np_sq_distances(x, y):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
