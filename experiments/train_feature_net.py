r"""Trains the digits feature network that gendiag ships.

  python experiments/train_feature_net.py --workdir=/tmp/featnet \
      --config.output=gendiag/features/digits_net.npz

Logs the loss and writes the weights (.npz) and metrics.json, with the test
accuracy on the fixed digits test split, into --workdir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.features import digits_net  # pylint: disable=g-import-not-at-top
from experiments import _binary  # noqa: E402  pylint: disable=g-import-not-at-top


if __name__ == "__main__":
  _binary.run(digits_net.train_and_evaluate, "train_feature_net",
              "Directory for weights and metrics.")
