r"""Config of experiments/gel_mode_dropping.py: GEL vs baselines.

  python experiments/gel_mode_dropping.py --workdir=/tmp/gel_mode_dropping

Default: a 10-class Gaussian mixture (32-d) and the digits embedded by the
shipped network; per dataset 2 repeats x (9 dropping levels + 16 imbalance
levels) = 50 models, each scored by GEL (one- and two-sample), improved
P/R, density/coverage, MMD, KID and FID. A few minutes per dataset on 2
CPU cores. Expected: GEL's Spearman correlation with the degree of
imbalance far above improved P/R's; on dropping both near 1 (see the
results table; the numbers measured are in the issue's report).

Smoke (seconds): --config=configs/gel_mode_dropping.py:smoke
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.datasets = ("mixture", "digits")
  config.mixture = ml_collections.ConfigDict(dict(
      num_classes=10, dim=32, separation=10.0, num_real=2000,
      num_pool=10000, num_witnesses=128, num_generated=2000))
  config.digits = ml_collections.ConfigDict(dict(
      extractor="digits_net", num_witnesses=32, num_generated=800,
      fractions=dict(real=0.45, pool=0.45, witness=0.1)))
  config.dropping_levels = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # classes dropped
  config.imbalance_levels = tuple(round(0.1 * i, 1) for i in range(16))
  config.num_repeats = 2
  config.gel = ml_collections.ConfigDict(dict(objective="et",
                                              kernel="gaussian"))
  config.kid_subset_size = 1000
  config.kid_num_subsets = 100
  if arg == "smoke":
    config.datasets = ("mixture",)
    config.mixture.update(num_real=300, num_pool=1500, num_witnesses=16,
                          num_generated=300)
    config.dropping_levels = (0, 2, 4)
    config.imbalance_levels = (0.0, 0.5, 1.0)
    config.num_repeats = 1
    config.kid_subset_size = 100
    config.kid_num_subsets = 10
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
