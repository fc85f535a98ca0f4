"""Benchmark cases for the foundation: distances, k-NN radii, MMD, KID, FID."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from gendiag.metrics import frechet
from gendiag.metrics import kid as kid_lib
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import distances
from gendiag.ops import knn
from gendiag.ops import kernels


def _pair(sizes):
  # One set at a time, the host copy freed once on the device.
  x = jax.device_put(common.random_features(0, sizes["n"], sizes["d"]))
  y = jax.device_put(common.random_features(1, sizes["m"], sizes["d"], 0.05))
  return x, y


@common.case("sq_distances")
def sq_distances_case(sizes):
  """Blocked squared distances reduced by a row-wise min (so nothing n x m)."""
  x, y = _pair(sizes)
  fn = jax.jit(lambda a, b: distances.map_row_blocks(
      lambda xb, _: jnp.min(distances.sq_distances(xb, b), axis=1), a,
      block_size=sizes["block_size"]))
  return common.Bench(run=lambda: fn(x, y),
                      flops=2.0 * sizes["n"] * sizes["m"] * sizes["d"],
                      notes="row-blocked |x-y|^2 with a row min")


def _mmd_case(sizes):
  x, y = _pair(sizes)
  kernel = kernels.Gaussian(kernels.median_heuristic(x))
  run = lambda: mmd_lib.mmd(x, y, kernel=kernel,
                            block_size=sizes["block_size"])
  n, m, d = sizes["n"], sizes["m"], sizes["d"]
  return common.Bench(run=run, flops=2.0 * d * (n * n + m * m + n * m),
                      notes="unbiased MMD^2, Gaussian kernel: K_XX, K_YY, K_XY")


common.case("mmd")(_mmd_case)
common.case("mmd_50k")(functools.partial(_mmd_case))


@common.case("kid")
def kid_case(sizes):
  x, y = _pair(sizes)
  s, d = sizes["subset_size"], sizes["d"]

  def numpy_kid():  # clean-fid's float32 loop, the usual peer formulation
    rng = np.random.default_rng(0)
    xs, ys = np.asarray(x), np.asarray(y)
    t = 0.0
    for _ in range(sizes["num_subsets"]):
      a = xs[rng.choice(len(xs), s, replace=False)]
      b = ys[rng.choice(len(ys), s, replace=False)]
      k = (a @ a.T / d + 1) ** 3 + (b @ b.T / d + 1) ** 3
      kb = (a @ b.T / d + 1) ** 3
      t += (k.sum() - np.diag(k).sum()) / (s - 1) - 2 * kb.sum() / s
    return t / sizes["num_subsets"] / s

  run = lambda: kid_lib.kid(x, y, key=jax.random.key(0),
                            num_subsets=sizes["num_subsets"], subset_size=s)
  return common.Bench(run=run, flops=sizes["num_subsets"] * 6.0 * s * s * d,
                      peers={"numpy (clean-fid formula)": numpy_kid},
                      peer_repeats=1, notes="100 subsets x 1000, cubic kernel")


@common.case("fid")
def fid_case(sizes):
  x, y = _pair(sizes)
  import scipy.linalg  # pylint: disable=g-import-not-at-top

  def scipy_fid():  # pytorch-fid / clean-fid: float64 cov + sqrtm
    a, b = np.float64(x), np.float64(y)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    diff = a.mean(0) - b.mean(0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)

  n, m, d = sizes["n"], sizes["m"], sizes["d"]
  return common.Bench(run=lambda: frechet.fid(x, y),
                      flops=2.0 * d * d * (n + m),
                      peers={"scipy sqrtm float64 (pytorch-fid)": scipy_fid},
                      peer_repeats=1,
                      notes="covariances + Cholesky + SVD; FLOPs count the "
                            "covariances only")


@common.case("knn_radii")
def knn_radii_case(sizes):
  x = jnp.asarray(common.random_features(0, sizes["n"], sizes["d"]))
  run = lambda: knn.knn_radii(x, [sizes["k"]])
  return common.Bench(run=run, flops=2.0 * sizes["n"] ** 2 * sizes["d"],
                      notes="k-th NN radius by running top-k")
