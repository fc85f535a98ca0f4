r"""Config of experiments/cas.py: CAS of simulated generators on digits.

The six simulated models of the main job's digits default (good, dropped,
imbalanced, blurred, memorized, shrunk), built in image space from sklearn's
digits; each model's labelled images train the fixed MLP recipe (5 seeds),
tested on held-out real digits, against the same recipe on real digits,
with the naive augmentation score at 25/50/100%. About a minute on 2 CPU
cores:

  python experiments/cas.py --workdir=/tmp/cas

Expected (seed 0, measured): real 0.949; good 0.949 and memorized 0.948
(CAS cannot see copying); dropped 0.778 with digits 3 and 8 at 0% in every
seed; shrunk 0.867 (low diversity hurts CAS, as truncation does in the
paper); blurred 0.930 and imbalanced 0.932 (the label-matched training set
hides most of the imbalance). NAS stays within about 0.01 of real.

Smoke variant (seconds): --config=configs/cas.py:smoke
"""

import os

import ml_collections

from gendiag import experiments

diagnose_config = experiments.load_config_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnose.py"))


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.default = diagnose_config.get_config().default
  # More real digits for the CAS train/test halves than the main job uses.
  config.default.digits.fractions = dict(real=0.45, train=0.2, test=0.05,
                                         pool=0.3)
  config.cas = diagnose_config.get_config().cas
  config.cas.update(num_seeds=5, nas_fractions=(0.25, 0.5, 1.0))
  if arg == "smoke":
    config.default.digits.num_per_model = 200
    config.cas.update(num_seeds=2, steps=100, nas_fractions=(0.5,))
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
