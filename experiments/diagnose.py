r"""Diagnose generative models: which failure does each one have?

  python experiments/diagnose.py --workdir=/tmp/gendiag
  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real.npy --config.generated=a=a.npy,b=b.npy

Writes report.md, metrics.json and PNG figures into --workdir.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag import diagnose  # pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "diagnose.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the report.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  diagnose.diagnose(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
