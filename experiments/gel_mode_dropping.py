r"""GEL vs improved P/R, density/coverage, MMD/KID and FID on mode dropping.

  python experiments/gel_mode_dropping.py --workdir=/tmp/gel_mode_dropping
  python experiments/gel_mode_dropping.py --workdir=/tmp/g \
      --config=configs/gel_mode_dropping.py:smoke

Simulated models drop 0..k classes or weight them unevenly; each metric's
Spearman and Pearson correlation with the true degree is the result
(the paper's claim: GEL predicts it up to 60% better than improved P/R).
Writes metrics.jsonl (a line per model, as it goes), results.json,
table.md and gel_mode_dropping.png into --workdir.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.evaluators import gel_experiment  # noqa: E402  pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "gel_mode_dropping.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the results.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  gel_experiment.experiment(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
