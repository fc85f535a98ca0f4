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

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.evaluators import frontier_experiment  # noqa: E402  pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "frontier_estimators.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the results.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  frontier_experiment.experiment(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
