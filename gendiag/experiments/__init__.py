"""The library side of each binary: `gendiag.experiments.NAME.run(config, workdir)`.

`experiments/NAME.py` (the absl binary), `configs/NAME.py` (its
ml_collections config) and `gendiag/experiments/NAME.py` line up; tests and
notebooks import the last. Only this layer writes result directories.
"""

import importlib.metadata
import importlib.util
import os
import types
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


def load_config_module(path: str) -> types.ModuleType:
  """A config file (configs/NAME.py) loaded by its path, as absl loads it.

  The configs/ directory is not a package on sys.path; a config that builds
  on another one, or a benchmark that reuses a binary's config, loads it
  here instead of editing sys.path.
  """
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"no config file at {path}.")
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
