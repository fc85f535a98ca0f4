"""What every binary shares: --config, --workdir, --compilation_cache.

A binary calls `_binary.run(gendiag.experiments.NAME.run, "NAME")`; --config
defaults to configs/NAME.py (fields overridable, unknown ones rejected).
"""

import os
from typing import Callable

from absl import app
from absl import flags
from ml_collections import config_flags

from gendiag import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(job: Callable[..., object], config_name: str,
        workdir_help: str = "Directory for the results.") -> None:
  """Defines the flags and runs job(config, workdir) under absl."""
  config_flags.DEFINE_config_file(
      "config", os.path.join(ROOT, "configs", config_name + ".py"),
      "Path to a config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, workdir_help)
  flags.mark_flags_as_required(["workdir"])
  flags.DEFINE_string(
      "compilation_cache", compilation_cache.default_directory(),
      "Directory of JAX's persistent compilation cache ('none': off; "
      f"default ${compilation_cache.ENV_VAR} or "
      f"{compilation_cache.DEFAULT_DIR}).")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    compilation_cache.enable_compilation_cache(flags.FLAGS.compilation_cache)
    job(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(main)
