"""Which metric predicts the degree of mode dropping and imbalance?

The CPU-scale version of the seed paper's comparison (Ravuri et al. 2023:
GEL tests "predict the degree of mode dropping and mode imbalance up to 60%
better than ... improved precision/recall"). For each labelled real set
(a Gaussian mixture, and the digits embedded by the shipped network) a grid
of simulated models is drawn from a held-out pool:

  dropping   k of the C classes never generated (k = `dropping_levels`;
             which ones is random per repeat); degree = k
  imbalance  class weights pi_c ~ exp(-a c) (a = `imbalance_levels`);
             degree = H(pi, uniform), the Hellinger distance

and every metric is oriented so that larger = worse:

  gel_one_sample   H(class masses of the one-sample GEL weights, real mix)
  gel_two_sample   H(class masses of the two-sample real weights, real mix)
  1-recall, 1-precision   improved P/R (k = 3)
  1-coverage, 1-density   density/coverage (k = 5)
  mmd2, kid, fid

The Spearman and Pearson correlations of each metric with the degree, over
the grid, are the result (the paper does not say which correlation
statistic its table reports, so both are given). GEL moments are Gaussian-kernel features at
held-out real witness rows, as in the paper's demos.
"""

import json
import os
import time
from typing import Dict

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np
from scipy import stats

from gendiag import features as features_lib
from gendiag import jsonl
from gendiag.data import digits as digits_lib
from gendiag.data import synthetic
from gendiag.metrics import frechet
from gendiag.metrics import gel as gel_lib
from gendiag.metrics.gel import modes as gel_modes
from gendiag.metrics import kid as kid_lib
from gendiag.metrics import mmd as mmd_lib
from gendiag.metrics import precision_recall as pr_lib
from gendiag.metrics.gel import dual as gel_dual
from gendiag.ops import kernels

METRICS = ("gel_one_sample", "gel_two_sample", "1-recall", "1-precision",
           "1-coverage", "1-density", "mmd2", "kid", "fid")
GEL_METRICS = ("gel_one_sample", "gel_two_sample")
PR_METRICS = ("1-recall", "1-precision")


def _dataset(name, cfg, key):
  """(real, real_labels, pool, pool_labels, witnesses) as float32 numpy."""
  if name == "mixture":
    c = cfg.mixture
    keys = jax.random.split(key, 4)
    mix = synthetic.make_mixture(keys[0], num_classes=c.num_classes,
                                 dim=c.dim, separation=c.separation)
    real, real_labels = synthetic.sample_mixture(keys[1], mix, c.num_real)
    pool, pool_labels = synthetic.sample_mixture(keys[2], mix, c.num_pool)
    witnesses, _ = synthetic.sample_mixture(keys[3], mix, c.num_witnesses)
    out = real, real_labels, pool, pool_labels, witnesses
  elif name == "digits":
    c = cfg.digits
    data = digits_lib.load()
    feats = features_lib.embed(c.extractor, data.images, name="digits")
    parts = digits_lib.split(data.labels, dict(c.fractions), key=key)
    witness_rows = parts["witness"][:c.num_witnesses]
    out = (feats[parts["real"]], data.labels[parts["real"]],
           feats[parts["pool"]], data.labels[parts["pool"]],
           feats[witness_rows])
  else:
    raise ValueError(f"unknown dataset {name!r}; use 'mixture' or 'digits'.")
  return tuple(np.asarray(a) for a in out)


def _models(cfg, pool, pool_labels, num_classes, num_generated, key):
  """Yields (family, degree, features) over the grid of simulated models."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  for repeat in range(cfg.num_repeats):
    for k in cfg.dropping_levels:
      dropped = rng.choice(num_classes, size=k, replace=False)
      sub = jax.random.fold_in(key, 1000 * repeat + k)
      x, _ = synthetic.drop_classes(sub, pool, pool_labels, dropped,
                                    num_generated)
      yield "dropping", float(k), np.asarray(x)
    for i, a in enumerate(cfg.imbalance_levels):
      weights = np.exp(-a * np.arange(num_classes))
      pi = weights / weights.sum()
      degree = float(np.sqrt(max(0.0, 1 - np.sum(np.sqrt(pi / num_classes)))))
      sub = jax.random.fold_in(key, 1000 * repeat + 500 + i)
      x, _ = synthetic.imbalance_classes(sub, pool, pool_labels, weights,
                                         num_generated)
      yield "imbalance", degree, np.asarray(x)


def _scores(real, real_labels, gen, witnesses, num_classes, cfg, key):
  """Every metric of one model, oriented larger = worse."""
  kernel = cfg.gel.kernel
  if kernel == "gaussian":  # one bandwidth for every model of a dataset
    kernel = kernels.Gaussian(kernels.median_heuristic(real))
  common = dict(witnesses=witnesses, kernel=kernel,
                objective=cfg.gel.objective)
  real_mix = np.bincount(real_labels, minlength=num_classes) / len(real)

  def mass_distance(weights):
    masses = np.bincount(real_labels, weights=np.asarray(weights, np.float64),
                         minlength=num_classes)
    return float(gel_modes.hellinger(jnp.asarray(masses),
                                     jnp.asarray(real_mix)))

  one = gel_lib.gel(real, gen, **common)
  two = gel_lib.gel(real, gen, two_sample=True, **common)
  ipr = pr_lib.improved_precision_recall(real, gen)
  dc = pr_lib.prdc(real, gen)
  subset = min(cfg.kid_subset_size, len(real), len(gen))
  return {
      "gel_one_sample": mass_distance(one.real_weights),
      "gel_two_sample": mass_distance(two.real_weights),
      "1-recall": 1.0 - float(ipr.recall),
      "1-precision": 1.0 - float(ipr.precision),
      "1-coverage": 1.0 - float(dc.coverage),
      "1-density": 1.0 - float(dc.density),
      "mmd2": float(mmd_lib.mmd(real, gen)),
      "kid": float(kid_lib.kid(real, gen, key=key, subset_size=subset,
                               num_subsets=cfg.kid_num_subsets).mean),
      "fid": float(frechet.fid(real, gen).fid),
  }, {"gel_one_sample": gel_dual.STATUS_NAMES[int(one.status)],
      "gel_two_sample": gel_dual.STATUS_NAMES[int(two.status)]}


def correlations(rows, family) -> Dict[str, dict]:
  """Spearman and Pearson correlation of each metric with the degree."""
  sel = [r for r in rows if r["family"] == family]
  degree = np.asarray([r["degree"] for r in sel])
  out = {}
  for m in METRICS:
    values = np.asarray([r["scores"][m] for r in sel])
    ok = np.isfinite(values)
    if ok.sum() < 3 or np.ptp(values[ok]) == 0:
      out[m] = {"spearman": None, "pearson": None, "num_models": int(ok.sum())}
      continue
    out[m] = {"spearman": float(stats.spearmanr(degree[ok], values[ok])[0]),
              "pearson": float(stats.pearsonr(degree[ok], values[ok])[0]),
              "num_models": int(ok.sum())}
  return out


def _comparison(corr) -> dict:
  """GEL's best correlation against improved P/R's best, per statistic."""
  out = {}
  for stat in ("spearman", "pearson"):
    best = lambda names: max((corr[m][stat] for m in names
                              if corr[m][stat] is not None), default=None)
    g, p = best(GEL_METRICS), best(PR_METRICS)
    out[stat] = {"gel": g, "improved_pr": p,
                 "relative_gain": (None if g is None or p is None or p == 0
                                   else (g - p) / abs(p))}
  return out


def _markdown(results) -> str:
  lines = ["# GEL vs baselines: correlation with the degree of failure", ""]
  for ds, res in results["datasets"].items():
    for family in ("dropping", "imbalance"):
      corr = res["correlations"][family]
      lines += [f"## {ds}: {family}", "",
                "| metric | Spearman | Pearson |", "|---|---|---|"]
      fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
      for m in METRICS:
        lines.append(f"| {m} | {fmt(corr[m]['spearman'])} | "
                     f"{fmt(corr[m]['pearson'])} |")
      cmp = res["comparison"][family]
      lines += ["", "GEL (best of one/two-sample) vs improved P/R (best of "
                "1-recall, 1-precision): " + "; ".join(
                    f"{s} {fmt(c['gel'])} vs {fmt(c['improved_pr'])} "
                    f"(relative gain {fmt(c['relative_gain'])})"
                    for s, c in cmp.items()), ""]
    statuses = res["gel_statuses"]
    lines += [f"GEL solver statuses ({ds}): {statuses}", ""]
  return "\n".join(lines)


def _figure(results) -> Figure:
  names = list(results["datasets"])
  fig = Figure(figsize=(3.0 * len(METRICS), 2.8 * 2 * len(names)))
  axes = fig.subplots(2 * len(names), len(METRICS), squeeze=False)
  for i, ds in enumerate(names):
    rows = results["datasets"][ds]["models"]
    for j, family in enumerate(("dropping", "imbalance")):
      sel = [r for r in rows if r["family"] == family]
      degree = [r["degree"] for r in sel]
      for col, m in enumerate(METRICS):
        ax = axes[2 * i + j, col]
        ax.scatter(degree, [r["scores"][m] for r in sel], s=10)
        ax.set_title(f"{ds} {family}: {m}", fontsize=8)
        ax.set_xlabel("dropped classes" if family == "dropping"
                      else "H(pi, uniform)", fontsize=7)
        ax.tick_params(labelsize=6)
  fig.tight_layout()
  return fig


def run(config, workdir: str) -> dict:
  """Runs the grid on every dataset; writes results.json, table.md, PNG.

  The library side of experiments/gel_mode_dropping.py. Also writes one JSON
  line per model to metrics.jsonl as it goes (a new file per run).
  """
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(config.seed)
  results = {"config": config.to_dict(), "datasets": {}}
  with jsonl.JsonLinesWriter(os.path.join(workdir, "metrics.jsonl"),
                             mode="w") as log:
    for d, name in enumerate(config.datasets):
      data_key, model_key, metric_key = jax.random.split(
          jax.random.fold_in(key, d), 3)
      real, real_labels, pool, pool_labels, witnesses = _dataset(
          name, config, data_key)
      num_classes = int(real_labels.max()) + 1
      size = (config.mixture.num_generated if name == "mixture"
              else config.digits.num_generated)
      rows, statuses, start = [], {}, time.perf_counter()
      grid = _models(config, pool, pool_labels, num_classes, size, model_key)
      for i, (family, degree, gen) in enumerate(grid):
        scores, status = _scores(real, real_labels, gen, witnesses,
                                 num_classes, config,
                                 jax.random.fold_in(metric_key, i))
        for s in status.values():
          statuses[s] = statuses.get(s, 0) + 1
        row = {"dataset": name, "family": family, "degree": degree,
               "scores": scores, "gel_status": status}
        rows.append(row)
        log.write(row)
        logging.info("%s model %d (%s, degree %.3g): gel %.3f, 1-recall %.3f "
                     "(%.0f s)", name, i, family, degree,
                     scores["gel_one_sample"], scores["1-recall"],
                     time.perf_counter() - start)
      corr = {f: correlations(rows, f) for f in ("dropping", "imbalance")}
      results["datasets"][name] = {
          "models": rows, "correlations": corr, "gel_statuses": statuses,
          "comparison": {f: _comparison(c) for f, c in corr.items()},
          "seconds": round(time.perf_counter() - start, 1)}
      logging.info("%s correlations: %s", name, json.dumps(corr))
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(_markdown(results))
  _figure(results).savefig(os.path.join(workdir, "gel_mode_dropping.png"),
                           dpi=100, bbox_inches="tight")
  return results
