r"""Classification Accuracy Score of simulated generators on sklearn digits.

  python experiments/cas.py --workdir=/tmp/cas

Writes report.md (with the per-class table), metrics.json and PNGs
(cas_per_class.png: per-class accuracy against the real reference) into
--workdir, and logs one JSON line per model.
"""

from gendiag.experiments import cas
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(cas.run, "cas",
              "Directory for the report.")
