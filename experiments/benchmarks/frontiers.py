"""Benchmark cases for MAUVE against `mauve-text` (PyPI 0.4.0).

mauve_5k            gendiag's `mauve(real, generated, key=...)` with its
                    defaults, which are mauve-text's: L2-normalised rows, PCA
                    at 0.9 explained variance, k-means with k = n/10 = 500, 5
                    restarts, at most 500 iterations, c = 5, 25 weights;
                    against `mauve.compute_mauve(p_features=real,
                    q_features=generated, device_id=-1, verbose=False)` with
                    its defaults (faiss k-means).
mauve_5k_cube_root  the same pipeline with k = 5 n^(1/3) = 86 clusters
                    (cluster_rule='cube_root'), against compute_mauve with
                    num_buckets=86.

Both are meant to run single-threaded (`config.single_thread_cases`), as the
notes' peer timings are. FLOPs are not counted (k-means iterations depend on
the data), so no FLOP fraction is reported.
"""

import jax
import jax.numpy as jnp

from benchmarks import common
from gendiag.metrics import frontiers


def _peer(x, y, num_buckets):
  import mauve  # pylint: disable=g-import-not-at-top

  def run():
    return mauve.compute_mauve(p_features=x, q_features=y, device_id=-1,
                               verbose=False,
                               num_buckets=num_buckets).mauve

  return run


def _case(sizes, cluster_rule, peer_name):
  x, y = common.random_pair(sizes)
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  key = jax.random.key(0)
  k = frontiers.num_clusters_for(min(sizes["n"], sizes["m"]), cluster_rule)
  run = lambda: frontiers.mauve(xj, yj, key=key,
                                cluster_rule=cluster_rule).mauve
  return common.Bench(
      run=run, peers={peer_name: _peer(x, y, "auto" if cluster_rule == "n/10"
                                       else k)},
      peer_repeats=sizes.get("peer_repeats", 3),
      notes=f"MAUVE end to end ({cluster_rule}: k = {k}; PCA at 0.9, 5 "
            "restarts, <= 500 iterations)")


@common.case("mauve_5k")
def mauve_5k_case(sizes):
  return _case(sizes, "n/10", "mauve-text 0.4.0 compute_mauve (defaults)")


@common.case("mauve_5k_cube_root")
def mauve_5k_cube_root_case(sizes):
  return _case(sizes, "cube_root",
               "mauve-text 0.4.0 compute_mauve (num_buckets = 5 n^(1/3))")
