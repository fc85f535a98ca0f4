"""Benchmark cases for k-NN precision/recall/density/coverage against `prdc`.

prdc_two_k  gendiag's `prdc(real, generated, k=(3, 5))`: both k from one set
            of three blocked distance passes, against `prdc.compute_prdc`
            called twice (k=3, then k=5), as a user of the package must.
prdc_one_k  a single k = 5 against one `compute_prdc` call.

FLOPs count the three distance matrices (real-real, generated-generated,
real-generated): 2 d (n^2 + m^2 + n m). prdc builds all three in full with
sklearn's `pairwise_distances`; gendiag never holds more than a block.
"""

import contextlib
import io

import jax.numpy as jnp
import numpy as np

from benchmarks import common
from gendiag.metrics import precision_recall


def _peer(x, y, ks):
  import prdc  # pylint: disable=g-import-not-at-top

  def run():
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints sizes
      return [prdc.compute_prdc(x, y, nearest_k=k) for k in ks]

  return run


def _case(sizes, ks, peer_name):
  x, y = common.random_pair(sizes)
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  k = ks if len(ks) > 1 else ks[0]
  n, m, d = sizes["n"], sizes["m"], sizes["d"]
  return common.Bench(
      run=lambda: precision_recall.prdc(xj, yj, k=k),
      flops=2.0 * d * (n * n + m * m + n * m),
      peers={peer_name: _peer(np.asarray(x), np.asarray(y), ks)},
      notes=f"precision/recall/density/coverage, k={k}; three blocked "
            "distance passes")


@common.case("prdc_two_k")
def prdc_two_k_case(sizes):
  return _case(sizes, (3, 5), "prdc 0.2, two calls (k=3, k=5)")


@common.case("prdc_one_k")
def prdc_one_k_case(sizes):
  return _case(sizes, (5,), "prdc 0.2 (k=5)")
