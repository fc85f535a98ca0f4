"""The main job: evaluate generated features against real ones, write a report.

`diagnose(config, workdir)` builds the inputs (the user's feature files, or
the embedded default of simulated models with known failures), runs the
selected metric families from the `gendiag.report` registry and writes
`metrics.json`, `report.md` and PNG figures into `workdir`.
"""

import datetime
import importlib.metadata
import platform
import time

from absl import logging
import jax
import numpy as np

from gendiag import evaluators  # noqa: F401  (registers the metric families)
from gendiag import features
from gendiag import io
from gendiag import report
from gendiag.data import digits
from gendiag.data import synthetic


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def embedded_default(config, key) -> report.EvalInputs:
  """The embedded default: `config.default.data` is "digits" or "mixture"."""
  data = config.default.get("data", "digits")
  if data == "digits":
    return digits_default(config, key)
  if data == "mixture":
    return mixture_default(config, key)
  raise ValueError(f"config.default.data must be 'digits' or 'mixture'; got "
                   f"{data!r}.")


def digits_default(config, key) -> report.EvalInputs:
  """sklearn's digits as 'real', embedded, and one model per failure mode.

  The 1,797 digits are split (stratified by class and by the feature
  network's own train/test membership, so every part looks alike to it) into
  `real` (the reference), `train` (the generators' training set: memorised
  copies come from it), `test` (held out from everything) and `pool`, from
  which `gendiag.data.digits.simulate_models` builds the models in image
  space (good, dropped, imbalanced, blurred, memorized, shrunk). Every set is
  embedded by `config.default.extractor` (the shipped digits network by
  default); `images` keeps the pixels for CAS and image grids.
  """
  cfg = config.default
  dcfg = cfg.digits
  data = digits.load()
  _, net_test = digits.train_test()
  strata = 2 * data.labels.astype(np.int64)
  strata[net_test] += 1
  split_key, model_key = jax.random.split(key)
  parts = digits.split(strata, dict(dcfg.fractions), key=split_key)
  sets = {name: data.take(idx) for name, idx in parts.items()}
  models = digits.simulate_models(
      model_key, sets["pool"], sets["train"], n=dcfg.num_per_model,
      dropped=tuple(cfg.dropped_classes), imbalance=dcfg.imbalance,
      blur_sigma=dcfg.blur_sigma, copy_fraction=cfg.copy_fraction,
      typical_fraction=dcfg.typical_fraction)
  extractor = features.get(cfg.get("extractor", "digits_net"))
  embed = lambda images, name: features.embed(extractor, images, name=name)
  images = {name: np.asarray(sets[name].images)
            for name in ("real", "train", "test")}
  images.update({m.name: m.images for m in models})
  return report.EvalInputs(
      real=embed(images["real"], "real digits"),
      real_labels=np.asarray(sets["real"].labels),
      generated={m.name: embed(m.images, f"{m.name} digits") for m in models},
      generated_labels={m.name: np.asarray(m.labels) for m in models},
      train=embed(images["train"], "train digits"),
      test=embed(images["test"], "test digits"), images=images,
      failures={m.name: m.failure for m in models}, config=config)


def mixture_default(config, key) -> report.EvalInputs:
  """A labelled Gaussian mixture as 'real' and one model per failure mode.

  The reference set, the pool the models are drawn from and the models'
  "training set" are independent draws from the same mixture, so the good
  model is exactly as good as fresh real data.
  """
  cfg = config.default
  keys = jax.random.split(key, 5)
  mixture = synthetic.make_mixture(keys[0], num_classes=cfg.num_classes,
                                   dim=cfg.dim, separation=cfg.separation)
  real, real_labels = synthetic.sample_mixture(keys[1], mixture, cfg.num_real)
  pool, pool_labels = synthetic.sample_mixture(keys[2], mixture, cfg.num_pool)
  train, _ = synthetic.sample_mixture(keys[3], mixture, cfg.num_train)
  models = synthetic.simulate_models(
      keys[4], pool, pool_labels, train, n=cfg.num_per_model,
      dropped=tuple(cfg.dropped_classes), noise_std=cfg.noise_std,
      copy_fraction=cfg.copy_fraction, shrink_factor=cfg.shrink_factor)
  return report.EvalInputs(
      real=np.asarray(real), real_labels=np.asarray(real_labels),
      generated={m.name: np.asarray(m.features) for m in models},
      generated_labels={m.name: np.asarray(m.labels) for m in models},
      train=np.asarray(train), failures={m.name: m.failure for m in models},
      config=config)


def inputs_from_files(config) -> report.EvalInputs:
  """Loads the user's features (and optional labels/train) named in config."""
  if not config.generated:
    raise ValueError("config.real is set but config.generated is empty; pass "
                     "--config.generated=NAME=PATH[,NAME=PATH...].")
  real = io.load_features(config.real, name="real")
  generated = {}
  for name, path in io.parse_named_paths(config.generated).items():
    generated[name] = io.load_features(path, name=name)
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
    optional[field] = io.load_features(path, name=field) if path else None
  return report.EvalInputs(real=real, generated=generated,
                           real_labels=real_labels,
                           generated_labels=generated_labels, config=config,
                           **optional)


def build_inputs(config, key) -> report.EvalInputs:
  if config.real:
    return inputs_from_files(config)
  if config.generated:
    raise ValueError("config.generated is set but config.real is not; pass "
                     "--config.real=PATH to the real features.")
  return embedded_default(config, key)


def diagnose(config, workdir: str) -> dict:
  """Runs the main job; returns the metrics.json content as a dict."""
  start = time.perf_counter()
  key = jax.random.key(config.seed)
  data_key, metrics_key = jax.random.split(key)
  inputs = build_inputs(config, data_key)
  logging.info("real: %s; models: %s", inputs.real.shape,
               {k: v.shape for k, v in inputs.generated.items()})
  outputs = report.run_families(inputs, metrics_key, config.metrics)
  meta = {
      "gendiag": _version("gendiag"),
      "jax": jax.__version__,
      "numpy": np.__version__,
      "python": platform.python_version(),
      "devices": [str(d) for d in jax.devices()],
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "seed": config.seed,
      "data": "files" if config.real else (
          f"embedded default ({config.default.get('data', 'digits')}, "
          f"{config.default.get('extractor', 'digits_net')} features)"
          if config.default.get("data", "digits") == "digits" else
          "embedded default (mixture)"),
      "config": config.to_dict(),
      "seconds": round(time.perf_counter() - start, 2),
  }
  report.write_report(workdir, inputs, outputs, meta)
  logging.info("wrote %s/report.md in %.1f s", workdir, meta["seconds"])
  with open(f"{workdir}/metrics.json") as f:
    import json  # pylint: disable=g-import-not-at-top
    return json.load(f)
