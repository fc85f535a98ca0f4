"""Benchmark cases for Feature Likelihood Divergence.

fld                 `fld(train, test, generated)` with its own baseline fit: two
                    bandwidth fits (model and baseline), both NLL passes; what
                    one call of the reference package's FLD computes (it needs
                    a second fit for the gap, which gendiag returns too).
fld_shared_baseline the per-model cost when one baseline C is shared by
                    several models (`baseline_nll=`), as the report does.

Train and test have n rows, the generated set m. FLOPs count the distance
matmuls: 2 d (n m + n m) for the model's fit and test pass, plus
2 d ((n - k) k + n k) for the baseline (k = min(m, n // 2)); each fit epoch
adds ~10 flops per cached distance, not counted. The reference package
(marcojira/fld, torch) does not install from PyPI; on this 2-core CPU one
FLD call at n = m = 10,000, d = 2048 took about 105 s (measured once by
the project, recorded here because the reference cannot be installed).
"""

import jax
import jax.numpy as jnp

from benchmarks import common
from gendiag.metrics import fld as fld_lib

REFERENCE_NOTE = ("reference marcojira/fld: ~105 s per FLD call at n = m = "
                  "10k, d = 2048 on this CPU (measured once; not on PyPI)")


def _sets(sizes):
  n, m, d = sizes["n"], sizes["m"], sizes["d"]
  train = jnp.asarray(common.random_features(0, n, d))
  test = jnp.asarray(common.random_features(1, n, d))
  gen = jnp.asarray(common.random_features(2, m, d, 0.05))
  return train, test, gen


def _flops(sizes, baseline):
  n, m, d = sizes["n"], sizes["m"], sizes["d"]
  flops = 2.0 * d * 2 * n * m
  if baseline:
    k = min(m, n // 2)
    flops += 2.0 * d * ((n - k) * k + n * k)
  return flops


@common.case("fld")
def fld_case(sizes):
  train, test, gen = _sets(sizes)
  key = jax.random.key(0)
  return common.Bench(
      run=lambda: fld_lib.fld(train, test, gen, key=key),
      flops=_flops(sizes, True),
      notes="FLD + gap + baseline C, cached train x generated distances; "
            + REFERENCE_NOTE)


@common.case("fld_shared_baseline")
def fld_shared_baseline_case(sizes):
  train, test, gen = _sets(sizes)
  key = jax.random.key(0)
  return common.Bench(
      run=lambda: fld_lib.fld(train, test, gen, key=key, baseline_nll=1.0),
      flops=_flops(sizes, False),
      notes="FLD + gap for one model given a shared baseline C")
