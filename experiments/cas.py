r"""Classification Accuracy Score of simulated generators on sklearn digits.

  python experiments/cas.py --workdir=/tmp/cas

Writes report.md (with the per-class table), metrics.json and PNGs
(cas_per_class.png: per-class accuracy against the real reference) into
--workdir, and logs one JSON line per model.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.evaluators import cas  # pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "cas.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the report.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cas.experiment(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
