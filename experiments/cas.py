r"""Classification Accuracy Score of simulated generators on sklearn digits.

  python experiments/cas.py --workdir=/tmp/cas

Writes report.md (with the per-class table), metrics.json and PNGs
(cas_per_class.png: per-class accuracy against the real reference) into
--workdir, and logs one JSON line per model.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag.evaluators import cas  # pylint: disable=g-import-not-at-top
from experiments import _binary  # noqa: E402  pylint: disable=g-import-not-at-top


if __name__ == "__main__":
  _binary.run(cas.experiment, "cas",
              "Directory for the report.")
