"""The main job's embedded default inputs: simulated models with known failures.

`embedded_default(config, key)` builds them from `config.default` (see
configs/diagnose.py): sklearn's digits embedded by a feature extractor
(`digits_default`) or a labelled Gaussian mixture (`mixture_default`), each
with one simulated model per failure mode. The main job
(`gendiag.experiments.diagnose`) and the CAS experiment
(`gendiag.experiments.cas`) share them.
"""

import jax
import numpy as np

from gendiag import features
from gendiag.data import digits
from gendiag.data import synthetic
from gendiag.data.inputs import EvalInputs


def embedded_default(config, key) -> EvalInputs:
  """The embedded default: `config.default.data` is "digits" or "mixture"."""
  data = config.default.get("data", "digits")
  if data == "digits":
    return digits_default(config, key)
  if data == "mixture":
    return mixture_default(config, key)
  raise ValueError(f"config.default.data must be 'digits' or 'mixture'; got "
                   f"{data!r}.")


def digits_default(config, key) -> EvalInputs:
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
  split_key, model_key = jax.random.split(key)
  parts = digits.split_like_feature_net(dict(dcfg.fractions), key=split_key)
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
  return EvalInputs(
      real=embed(images["real"], "real digits"),
      real_labels=np.asarray(sets["real"].labels),
      generated={m.name: embed(m.images, f"{m.name} digits") for m in models},
      generated_labels={m.name: np.asarray(m.labels) for m in models},
      train=embed(images["train"], "train digits"),
      test=embed(images["test"], "test digits"), images=images,
      failures={m.name: m.failure for m in models}, config=config,
      feature_space=f"{cfg.get('extractor', 'digits_net')} features of "
      "scikit-learn's 8x8 digits")


def mixture_default(config, key) -> EvalInputs:
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
  return EvalInputs(
      real=np.asarray(real), real_labels=np.asarray(real_labels),
      generated={m.name: np.asarray(m.features) for m in models},
      generated_labels={m.name: np.asarray(m.labels) for m in models},
      train=np.asarray(train), failures={m.name: m.failure for m in models},
      config=config, feature_space=f"the {cfg.dim}-d coordinates of a "
      "simulated Gaussian mixture")
