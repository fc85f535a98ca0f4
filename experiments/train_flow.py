r"""Train a normalizing flow by MLE, an f-divergence (incl. PR) or MMD.

  python experiments/train_flow.py --workdir=/tmp/flow_ring \
      --config=configs/train_flow.py:ring

See configs/train_flow.py for the datasets, objectives and the smoke
variant. Writes metrics.json, samples.npz and PNGs into --workdir; rerunning
with the same --workdir resumes from the last checkpoint.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.flows import experiment  # pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "train_flow.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and outputs.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
