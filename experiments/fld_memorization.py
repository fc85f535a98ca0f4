r"""FLD and memorisation: how each metric reacts as a model copies its training set.

  python experiments/fld_memorization.py --workdir=/tmp/fld_memorization

A labelled Gaussian mixture is split into a training and a test set; the
simulated models copy a growing fraction of training samples (exactly, and
with small noise), drop classes, blur (shrink towards class means) or add
noise. Writes metrics.jsonl (one JSON line per model, as it goes),
results.json, report.md and fld_memorization.png (each metric against the
copied fraction) into --workdir.
"""

from gendiag.experiments import fld_memorization
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(fld_memorization.run, "fld_memorization")
