r"""Diagnose generative models: which failure does each one have?

  python experiments/diagnose.py --workdir=/tmp/gendiag
  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real.npy --config.generated=a=a.npy,b=b.npy

Writes report.md, metrics.json and PNG figures into --workdir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gendiag import diagnose  # pylint: disable=g-import-not-at-top
from experiments import _binary  # noqa: E402  pylint: disable=g-import-not-at-top


if __name__ == "__main__":
  _binary.run(diagnose.diagnose, "diagnose",
              "Directory for the report.")
