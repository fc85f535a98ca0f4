r"""FLD and memorisation: how each metric reacts as a model copies its training set.

  python experiments/fld_memorization.py --workdir=/tmp/fld_memorization

A labelled Gaussian mixture is split into a training and a test set; the
simulated models copy a growing fraction of training samples (exactly, and
with small noise), drop classes, blur (shrink towards class means) or add
noise. Writes metrics.jsonl (one JSON line per model, as it goes),
results.json, report.md and fld_memorization.png (each metric against the
copied fraction) into --workdir.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.evaluators import fld  # pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "fld_memorization.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the results.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fld.experiment(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
