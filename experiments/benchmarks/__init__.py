"""Benchmark cases, one module per metric family; importing registers them."""

import importlib

MODULES = ("distances", "precision_recall", "frontiers", "gel", "fld",
           "flows", "main_job", "inception", "vit")


def load_all():
  """Imports every case module (each registers its cases in common.CASES)."""
  for name in MODULES:
    importlib.import_module(f"{__name__}.{name}")
