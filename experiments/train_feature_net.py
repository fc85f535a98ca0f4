r"""Trains the digits feature network that gendiag ships.

  python experiments/train_feature_net.py --workdir=/tmp/featnet \
      --config.output=gendiag/features/digits_net.npz

Logs the loss and writes the weights (.npz) and metrics.json, with the test
accuracy on the fixed digits test split, into --workdir.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.features import digits_net  # pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "train_feature_net.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for weights and metrics.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  digits_net.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
