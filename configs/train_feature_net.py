r"""Config of experiments/train_feature_net.py: the shipped digits CNN.

Trains `gendiag.features.digits_net.DigitsNet` on the fixed 70% train split
of sklearn's digits (`gendiag.data.digits.train_test()`), about 1.5 minutes
on 2 CPU cores. Expected (the shipped weights): train accuracy 1.000, test
accuracy 0.9963 (537 of the 539 test digits; tests require at least 0.95),
feature_scale 4.2512.

Reproduce the shipped weights:

  python experiments/train_feature_net.py --workdir=/tmp/featnet \
      --config.output=gendiag/features/digits_net.npz

Smoke variant (seconds, a throwaway net): --config=...:smoke
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.steps = 3000
  config.batch_size = 64
  config.learning_rate = 3e-3
  config.weight_decay = 1e-4
  config.max_shift = 1      # random translation augmentation, pixels
  config.log_every = 500
  config.output = ""        # .npz path; default: <workdir>/digits_net.npz
  if arg == "smoke":
    config.steps = 20
    config.log_every = 10
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
