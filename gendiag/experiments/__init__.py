"""The library side of each binary: `gendiag.experiments.NAME.run(config, workdir)`.

`experiments/NAME.py` (the absl binary), `configs/NAME.py` (its
ml_collections config) and `gendiag/experiments/NAME.py` line up; tests and
notebooks import the last. Only this layer writes result directories.
"""

import importlib.metadata
from typing import Dict, Sequence


def package_versions(packages: Sequence[str]) -> Dict[str, str]:
  """{package: installed version, or "not installed"} for a run's metadata."""
  out = {}
  for package in packages:
    try:
      out[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      out[package] = "not installed"
  return out
