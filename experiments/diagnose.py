r"""Diagnose generative models: which failure does each one have?

  python experiments/diagnose.py --workdir=/tmp/gendiag
  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real.npy --config.generated=a=a.npy,b=b.npy

Writes report.md, metrics.json and PNG figures into --workdir.
"""

from gendiag.experiments import diagnose
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(diagnose.run, "diagnose",
              "Directory for the report.")
