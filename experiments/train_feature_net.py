r"""Trains the digits feature network that gendiag ships.

  python experiments/train_feature_net.py --workdir=/tmp/featnet \
      --config.output=gendiag/features/digits_net.npz

Logs the loss and writes the weights (.npz) and metrics.json, with the test
accuracy on the fixed digits test split, into --workdir.
"""

from gendiag.experiments import train_feature_net
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(train_feature_net.run, "train_feature_net",
              "Directory for weights and metrics.")
