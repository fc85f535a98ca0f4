r"""Train a normalizing flow by MLE, an f-divergence (incl. PR) or MMD.

  python experiments/train_flow.py --workdir=/tmp/flow_ring \
      --config=configs/train_flow.py:ring

See configs/train_flow.py for the datasets, objectives and the smoke
variant. Writes metrics.json, samples.npz and PNGs into --workdir; rerunning
with the same --workdir resumes from the last checkpoint.
"""

from gendiag.experiments import train_flow
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(train_flow.run, "train_flow",
              "Directory for checkpoints and outputs.")
