"""The binaries' persistent compilation cache: a second process reuses it."""

import json
import os
import subprocess
import sys

from gendiag import compilation_cache

_PROGRAM = r"""
import json, sys
import jax, jax.numpy as jnp
from gendiag import compilation_cache
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
directory = compilation_cache.enable_compilation_cache(sys.argv[1])
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"directory": directory, "hits": events.count(
    "/jax/compilation_cache/cache_hits"), "misses": events.count(
    "/jax/compilation_cache/cache_misses")}))
"""


def _run(directory):
  out = subprocess.run([sys.executable, "-c", _PROGRAM, directory],
                       capture_output=True, text=True, check=True,
                       timeout=120)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_compiled_programs_from_the_cache(tmp_path):
  directory = str(tmp_path / "cache")
  first = _run(directory)
  assert first["directory"] == directory
  assert first["misses"] >= 1 and first["hits"] == 0
  assert os.listdir(directory)
  second = _run(directory)
  assert second["hits"] >= first["misses"] and second["misses"] == 0


def test_cache_off_by_name(monkeypatch):
  for off in ("none", "", "OFF"):
    assert compilation_cache.enable_compilation_cache(off) is None
  monkeypatch.setenv(compilation_cache.ENV_VAR, "none")
  assert compilation_cache.default_directory() == "none"
