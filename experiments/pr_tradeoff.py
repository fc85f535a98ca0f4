r"""The PR-divergence trade-off: a lambda sweep of flows, scored by P/R.

  python experiments/pr_tradeoff.py --workdir=/tmp/pr_tradeoff
  python experiments/pr_tradeoff.py --workdir=/tmp/prt_smoke \
      --config=configs/pr_tradeoff.py:smoke

Verine et al. (NeurIPS 2023) at CPU scale: flows fine-tuned with the
PR-divergence at several lam (and MLE, reverse KL) on 2-D mixtures and
digits features; precision should rise and recall fall as lam grows.
Writes tradeoff.json, tradeoff.md, tradeoff.png, samples.png and
metrics.jsonl into --workdir (`gendiag.flows.tradeoff.experiment`).
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.flows import tradeoff  # noqa: E402  pylint: disable=g-import-not-at-top

_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "pr_tradeoff.py")
config_flags.DEFINE_config_file("config", _CONFIG_PATH,
                                "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the results.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  tradeoff.experiment(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
