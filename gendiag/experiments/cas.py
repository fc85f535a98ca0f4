"""CAS of the simulated digit models: the library side of experiments/cas.py.

`run(config, workdir)` builds the digits models of the main job's digits
default and runs the report's "cas" family alone, with the full NAS sweep of
configs/cas.py.
"""

import json
import time

from absl import logging
import jax

from gendiag import report
from gendiag.data import defaults
from gendiag.report.families import cas


def run(config, workdir: str) -> dict:
  """CAS of the simulated digit models; the library side of experiments/cas.py.

  Builds the digits models exactly as the main job's digits default does
  (`gendiag.data.defaults.digits_default` with `config.default`), runs the
  "cas" family with `config.cas` and writes report.md (per-class table),
  metrics.json, cas_per_class.png (per-class accuracy against the real
  reference), cas.png and cas_samples.png into `workdir`.

  Args:
    config: seed, default (the digits data section of configs/diagnose.py)
      and cas (this family's hyperparameters); see configs/cas.py.
    workdir: output directory.

  Returns:
    The metrics.json content.
  """
  start = time.perf_counter()
  data_key, cas_key = jax.random.split(jax.random.key(config.seed))
  inputs = defaults.digits_default(config, data_key)
  outputs = {"cas": cas.cas_family(inputs,
                                   report.family_key(cas_key, "cas"))}
  meta = {"seed": config.seed, "jax": jax.__version__,
          "data": "sklearn digits, simulated models in image space",
          "config": config.to_dict(),
          "seconds": round(time.perf_counter() - start, 2)}
  report.write_report(workdir, inputs, outputs, meta)
  with open(f"{workdir}/metrics.json") as f:
    metrics = json.load(f)
  for model, entries in metrics["models"].items():
    logging.info("%s", json.dumps({"model": model, **{
        k: v["value"] for k, v in entries.items()}}))
  return metrics
