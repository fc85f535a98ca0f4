"""JAX's persistent compilation cache, on for gendiag's binaries and notebooks.

XLA compilation is most of a first call at the sizes of the main job (each
metric family compiles its own programs). With the cache on, a second run of
the same program (same shapes, flags and jax version) loads the compiled
executable from disk instead of compiling it again; XLA keys the entries, so
a changed program is never served a stale one.
"""

import os
from typing import Optional

import jax

ENV_VAR = "GENDIAG_COMPILATION_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "gendiag", "jax")
OFF = ("", "none", "off")


def default_directory() -> str:
  """`$GENDIAG_COMPILATION_CACHE` if set (empty or 'none': off), else
  `~/.cache/gendiag/jax`."""
  return os.environ.get(ENV_VAR, DEFAULT_DIR)


def enable_compilation_cache(directory: Optional[str] = None) -> Optional[str]:
  """Turns JAX's persistent compilation cache on, caching every program.

  Args:
    directory: where compiled programs are stored; None reads
      `default_directory()`. '', 'none' or 'off' leave the cache off.

  Returns:
    The absolute cache directory, or None when the cache stays off.
  """
  directory = default_directory() if directory is None else directory
  if directory.strip().lower() in OFF:
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # Cache every program, not only those that took over a second to compile:
  # the report compiles hundreds of small ones.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
