"""Scores a flow's samples against held-out real rows: one `evaluate`.

Both flow experiments (experiments/train_flow.py and the lambda sweep of
experiments/pr_tradeoff.py) score samples with this function; each names
the entries in its own output files.
"""

from typing import Optional

import jax
import numpy as np

from gendiag.metrics import frontiers
from gendiag.metrics import prd as prd_lib
from gendiag.metrics import precision_recall as pr_lib


def evaluate(real: jax.Array, generated: jax.Array, *, key: jax.Array,
             k: int = 3, prd_clusters: int = 20, prd_runs: int = 10,
             num_angles: int = 1001, prdc_k: Optional[int] = None,
             mauve_key: Optional[jax.Array] = None) -> dict:
  """gendiag's precision/recall family of `generated` against `real`.

  Improved precision/recall (Kynkaanniemi et al. 2019): the share of
  generated rows inside some real row's k-NN ball, and vice versa. PRD
  (Sajjadi et al. 2018): the curve alpha(lam), beta(lam) of the k-means
  histograms of the union, with max F_8 (recall-like) and F_1/8
  (precision-like). Optionally precision/recall/density/coverage (Naeem et
  al. 2020) and MAUVE (Pillutla et al. 2021; mauve-text defaults).

  Args:
    real: (n, d) held-out real rows.
    generated: (m, d) flow samples (m = n keeps PRD balanced).
    key: PRNG key of PRD's k-means runs.
    k: improved precision/recall's k (Kynkaanniemi et al.: 3).
    prd_clusters, prd_runs: PRD's k-means (Sajjadi et al.: 20, 10).
    num_angles: points on the PRD curve.
    prdc_k: density/coverage's k (Naeem et al.: 5); None skips PRDC.
    mauve_key: PRNG key of MAUVE's k-means; None skips MAUVE.

  Returns:
    {'precision', 'recall', 'prd_f_beta', 'prd_f_inv_beta': floats,
     'prd_converged': bool (every k-means run converged),
     'prd_precision', 'prd_recall': (num_angles,) numpy arrays}, plus
    'prdc_precision', 'prdc_recall', 'density', 'coverage' with `prdc_k`
    and 'mauve' with `mauve_key`.
  """
  ipr = pr_lib.improved_precision_recall(real, generated, k=k)
  curve = prd_lib.prd(real, generated, key=key, num_clusters=prd_clusters,
                      num_runs=prd_runs, num_angles=num_angles)
  out = {"precision": float(ipr.precision), "recall": float(ipr.recall),
         "prd_f_beta": float(curve.f_beta),
         "prd_f_inv_beta": float(curve.f_inv_beta),
         "prd_converged": bool(np.all(curve.converged)),
         "prd_precision": np.asarray(curve.precision),
         "prd_recall": np.asarray(curve.recall)}
  if prdc_k is not None:
    pr = pr_lib.prdc(real, generated, k=prdc_k)
    out.update(prdc_precision=float(pr.precision),
               prdc_recall=float(pr.recall), density=float(pr.density),
               coverage=float(pr.coverage))
  if mauve_key is not None:
    out["mauve"] = float(frontiers.mauve(real, generated,
                                         key=mauve_key).mauve)
  return out
