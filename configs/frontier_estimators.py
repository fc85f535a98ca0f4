r"""Config of experiments/frontier_estimators.py (Liu et al. 2021 at CPU scale).

Two 2-D pairs with a known frontier integral (computed by the binary by
numerical integration): N(0, I) vs N((1, 1), I) (FI 0.276984) and N(0, I)
vs N(0, 5 I) (FI 0.300780). For n from 100 to 10^4 samples per set, k-means
histograms with k = n/10 (mauve-text) or k = 5 n^(1/r), r = 2, 3, 4, 5, and
the FI error of every distribution estimator. About 5 minutes on 2 CPU
cores:

  python experiments/frontier_estimators.py --workdir=/tmp/frontier_estimators

Expected (seed 0; see the module docstring of
gendiag/experiments/frontier_estimators.py): with k = n/10 the
Krichevsky-Trofimov, Braess-Sauer and Good-Turing estimators have lower
error than the empirical one; with the empirical estimator k = 5 n^(1/3) has
the lowest error at the largest n, and the n/10 rule's error does not shrink
with n.

Smoke variant (seconds): --config=configs/frontier_estimators.py:smoke
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.distributions = ("gaussian_shift", "gaussian_scale")
  config.sample_sizes = (100, 316, 1000, 3162, 10000)
  config.rules = ("n/10", "n^(1/2)", "n^(1/3)", "n^(1/4)", "n^(1/5)")
  config.constant = 5.0           # k = constant * n^(1/r)
  config.num_repeats = 8
  config.max_iters = 100          # Lloyd iterations (k-means++ init)
  config.estimator_rule = "n/10"  # the rule of the estimator comparison
  config.rate_estimator = "empirical"  # the estimator of the rule comparison
  if arg == "smoke":
    config.distributions = ("gaussian_shift",)
    config.sample_sizes = (100, 300)
    config.rules = ("n/10", "n^(1/3)")
    config.num_repeats = 2
    config.max_iters = 20
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
