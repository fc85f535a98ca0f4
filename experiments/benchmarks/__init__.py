"""Benchmark cases, one module per metric family; importing registers them."""

import importlib

MODULES = ("distances", "precision_recall", "frontiers", "gel", "fld",
           "flows", "main_job")


def load_all():
  """Imports every case module that exists (families land one by one)."""
  for name in MODULES:
    try:
      importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"{__name__}.{name}":
        raise
