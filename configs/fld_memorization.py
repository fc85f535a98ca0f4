r"""Config of experiments/fld_memorization.py: metrics against copying.

A 10-class, 64-d Gaussian mixture (classes 6 apart, unit std): 4,000
training and 2,000 test samples, 2,000 samples per model. Models copy 0, 10,
25, 50, 75 or 100% of their samples from the training set, exactly or with
noise of 10% of the typical nearest-neighbour distance; others drop classes
3 and 8, shrink towards the class means by 0.5 ("blur") or add noise of std
0.5. A few minutes on 2 CPU cores:

  python experiments/fld_memorization.py --workdir=/tmp/fld_memorization

What to look for: the FLD gap falls steadily with the copied fraction and
copies are flagged one for one, while FID against the training set falls
(it rewards copying) and FID against the test set barely moves.

Smoke variant (seconds): --config=configs/fld_memorization.py:smoke
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      num_classes=10, dim=64, separation=6.0, num_train=4000, num_test=2000,
      num_generated=2000, copy_fractions=(0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
      noisy_copy_fractions=(0.1, 0.25, 0.5, 0.75, 1.0), noisy_copy_scale=0.1,
      dropped_classes=(3, 8), shrink_factor=0.5, noise_std=0.5))
  config.fld = ml_collections.ConfigDict(dict(
      max_epochs=50, copy_threshold=1.0 / 3.0, num_cells=3))
  if arg == "smoke":
    config.data.update(num_classes=4, dim=16, num_train=200, num_test=100,
                       num_generated=100, copy_fractions=(0.0, 0.5, 1.0),
                       noisy_copy_fractions=(0.5,), dropped_classes=(1,))
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
