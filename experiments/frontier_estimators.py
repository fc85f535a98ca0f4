r"""Frontier-integral estimators and quantization rates (Liu et al. 2021).

  python experiments/frontier_estimators.py --workdir=/tmp/frontier_estimators
  python experiments/frontier_estimators.py --workdir=/tmp/f \
      --config=configs/frontier_estimators.py:smoke

On 2-D distributions with a known frontier integral, the error of the
quantized FI against n per distribution estimator (smoothed vs empirical)
and per growth rate of the number of k-means bins (k ~ n^(1/3) is best).
Writes results.json, table.md and frontier_estimators.png into --workdir and
logs a line per (distribution, rule, n) as it goes.
"""

from gendiag.experiments import frontier_estimators
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(frontier_estimators.run, "frontier_estimators")
