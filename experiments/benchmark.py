r"""Benchmarks gendiag's ops against the machine's matmul rate and the peers.

  python experiments/benchmark.py --workdir=/tmp/bench
  python experiments/benchmark.py --workdir=/tmp/bench \
      --config=configs/benchmark.py:smoke --config.cases=sq_distances,mmd

Each case runs in two fresh subprocesses: one measures the reference matmul
rate, the op's first and warm calls and the peers (protocol in
experiments/benchmarks/common.py); the other runs only the op once and
reports its peak RSS. Results: benchmark.json and benchmark.md in --workdir,
with each case's per-device shard and block sizes under `mesh=` for
D = 1, 2, 4, 8 and the devices of this run (computed from shapes; see
common.per_shard_sizes). The runner is experiments/benchmarks/runner.py.
"""

from absl import app

from benchmarks import runner  # experiments/benchmarks/, beside this file


if __name__ == "__main__":
  app.run(runner.main)
