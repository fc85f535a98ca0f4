"""The main job: evaluate generated features against real ones, write a report.

`run(config, workdir)` (experiments/diagnose.py) builds the inputs (the
user's feature files, or the embedded default of simulated models with known
failures, `gendiag.data.defaults`), runs the selected metric families of
`gendiag.report.REGISTRY` and writes `metrics.json`, `report.md` and PNG
figures into `workdir`.
"""

import datetime
import json
import platform
import time

from absl import logging
import jax
import numpy as np

from gendiag import io
from gendiag import report
from gendiag.data.defaults import embedded_default
from gendiag.data.inputs import EvalInputs
from gendiag.experiments import image_inputs
from gendiag.experiments import package_versions
from gendiag.report import result_cache


def inputs_from_files(config) -> EvalInputs:
  """Loads the user's features (and optional labels/train) named in config.

  With `config.extractor` set, the paths name images, embedded first
  (`image_inputs`); `config.reference` adds reference statistics.
  """
  if not config.generated:
    raise ValueError("config.real is set but config.generated is empty; pass "
                     "--config.generated=NAME=PATH[,NAME=PATH...].")
  embedded = (image_inputs.embed_sets(config)
              if config.get("extractor", "") else None)

  def load(path, name, key):
    if embedded is not None:
      return embedded.main(key)
    return io.load_features(path, name=name)

  real = load(config.real, "real", "real")
  generated = {}
  for name, path in io.parse_named_paths(config.generated).items():
    generated[name] = load(path, name, f"model {name}")
    if generated[name].shape[1] != real.shape[1]:
      raise ValueError(f"model {name!r} has {generated[name].shape[1]} "
                       f"features but real has {real.shape[1]}.")
  real_labels = (io.load_labels(config.real_labels, num_rows=len(real),
                                name="real_labels")
                 if config.real_labels else None)
  generated_labels = {}
  for name, path in io.parse_named_paths(config.generated_labels).items():
    if name not in generated:
      raise ValueError(f"generated_labels names {name!r}, which is not among "
                       f"the models {sorted(generated)}.")
    generated_labels[name] = io.load_labels(
        path, num_rows=len(generated[name]), name=f"{name} labels")
  optional = {}
  for field in ("train", "test"):
    path = config.get(field, "")
    optional[field] = load(path, field, field) if path else None
  inputs = EvalInputs(real=real, generated=generated,
                      real_labels=real_labels,
                      generated_labels=generated_labels, config=config,
                      reference=image_inputs.reference(config), **optional)
  if embedded is not None:
    image_inputs.add_image_outputs(inputs, embedded)
  return inputs


def build_inputs(config, key) -> EvalInputs:
  """The user's files (`config.real`, ...) or else the embedded default."""
  if config.real:
    return inputs_from_files(config)
  if config.generated:
    raise ValueError("config.generated is set but config.real is not; pass "
                     "--config.real=PATH to the real features.")
  return embedded_default(config, key)


def run(config, workdir: str) -> dict:
  """Runs the main job; returns the metrics.json content as a dict."""
  start = time.perf_counter()
  key = jax.random.key(config.seed)
  data_key, metrics_key = jax.random.split(key)
  inputs = build_inputs(config, data_key)
  logging.info("real: %s; models: %s", inputs.real.shape,
               {k: v.shape for k, v in inputs.generated.items()})
  spec = config.get("result_cache", "off")
  cache_dir = result_cache.enable(None if spec == "default" else spec)
  try:
    outputs = report.run_families(inputs, metrics_key, config.metrics,
                                  registry=report.REGISTRY)
  finally:
    result_cache.disable()
  meta = {
      "gendiag": package_versions(["gendiag"])["gendiag"],
      "jax": jax.__version__,
      "numpy": np.__version__,
      "python": platform.python_version(),
      "devices": [str(d) for d in jax.devices()],
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "seed": config.seed,
      "data": (inputs.feature_space if config.get("extractor", "") else
               "files") if config.real else (
          f"embedded default ({config.default.get('data', 'digits')}, "
          f"{config.default.get('extractor', 'digits_net')} features)"
          if config.default.get("data", "digits") == "digits" else
          "embedded default (mixture)"),
      "config": config.to_dict(),
      "result_cache": cache_dir or "off",
      "seconds": round(time.perf_counter() - start, 2),
  }
  report.write_report(workdir, inputs, outputs, meta)
  logging.info("wrote %s/report.md in %.1f s", workdir, meta["seconds"])
  with open(f"{workdir}/metrics.json") as f:
    return json.load(f)
