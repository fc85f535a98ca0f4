"""The frontier-integral paper's estimator study at CPU scale.

Liu et al. (NeurIPS 2021) bound the error of the quantized, plug-in
frontier integral by a statistical term ~ log n (sqrt(k/n) + k/n) (k bins,
n samples per set) plus a quantization term ~ 1/k, and report two findings
this experiment reproduces on 2-D continuous distributions:

  1. smoothed distribution estimators (Laplace, Krichevsky-Trofimov,
     Braess-Sauer, Good-Turing) beat the empirical one: they put mass on the
     bins a finite sample misses, which the empirical plug-in reads as a
     difference between P and Q;
  2. k ~ n^(1/3) is the best growth of the number of bins: it balances the
     two terms (sqrt(k/n) = 1/k), so faster growth (k ~ n^(1/2), or
     mauve-text's k = n/10) leaves the statistical error large and slower
     growth (n^(1/4), n^(1/5)) the quantization error.

Protocol: for each distribution pair, sample size n and quantization rule,
draw n points from P and from Q (`num_repeats` times), cluster the union
with k-means (no PCA, no normalisation: the data are 2-D), estimate FI from
the two cluster histograms with every estimator, and record the absolute
error against the true FI, which `true_frontier_integral` computes by
numerical integration of FI = int [(p + q)/2 - p q log(p/q) / (p - q)] dx on
a grid (trapezoid rule, exponentially accurate for these smooth, fast-
decaying integrands).

References:
  Liu, Pillutla, Welleck, Oh, Choi, Harchaoui. Divergence Frontiers for
  Generative Models: Sample Complexity, Quantization Effects, and Frontier
  Integrals. NeurIPS 2021 (k = c n^(1/r), r in {2, 3, 4, 5}, on 2-D
  Gaussians, k-means quantization; the estimators of
  `gendiag.metrics.frontiers.smoothing`).
"""

import functools
import json
import math
import os
import time
from typing import Dict

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from gendiag.metrics import frontiers
from gendiag.metrics.frontiers import smoothing
from gendiag.ops import quantize

ESTIMATORS = ("empirical", "laplace", "krichevsky_trofimov", "braess_sauer",
              "good_turing")

# name -> (P's mean, P's covariance scale, Q's mean, Q's covariance scale):
# P = N(mu_p, s_p I_2), Q = N(mu_q, s_q I_2).
DISTRIBUTIONS = {
    "gaussian_shift": ((0.0, 0.0), 1.0, (1.0, 1.0), 1.0),   # FI 0.276984
    "gaussian_scale": ((0.0, 0.0), 1.0, (0.0, 0.0), 5.0),   # FI 0.300780
}


def _check_distribution(name: str):
  if name not in DISTRIBUTIONS:
    raise ValueError(f"unknown distribution {name!r}; choose from "
                     f"{sorted(DISTRIBUTIONS)}.")


def _log_gaussian(x, mean, scale):
  d = x.shape[-1]
  sq = np.sum((x - np.asarray(mean)) ** 2, axis=-1)
  return -0.5 * sq / scale - 0.5 * d * math.log(2 * math.pi * scale)


def true_frontier_integral(name: str, *, grid_size: int = 1601,
                           half_width: float = 0.0) -> float:
  """The population FI of a named 2-D pair by numerical integration.

    FI(P, Q) = int [(p + q)/2 - p q (log p - log q) / (p - q)] dx
             = int [(p + q)/2 - q h(log p - log q)] dx,
    h(s) = s / (1 - e^-s), h(0) = 1,

  by the trapezoid rule on a square grid, in float64.

  Args:
    name: a key of `DISTRIBUTIONS`.
    grid_size: points per axis.
    half_width: the grid spans [-w, w]^2 around the origin; 0 picks 10
      standard deviations of the wider component plus the largest mean.

  Returns:
    FI in [0, 1].
  """
  _check_distribution(name)
  mu_p, s_p, mu_q, s_q = DISTRIBUTIONS[name]
  if not half_width:
    half_width = 10.0 * math.sqrt(max(s_p, s_q)) + max(
        np.max(np.abs(mu_p)), np.max(np.abs(mu_q)))
  t = np.linspace(-half_width, half_width, int(grid_size))
  xx, yy = np.meshgrid(t, t, indexing="ij")
  x = np.stack([xx, yy], axis=-1)
  log_p, log_q = _log_gaussian(x, mu_p, s_p), _log_gaussian(x, mu_q, s_q)
  s = log_p - log_q
  with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
    h = np.where(np.abs(s) < 1e-8, 1.0 + s / 2, s / -np.expm1(-s))
  # q h(s) = p q s / (p - q); where p >> q, h ~ s and q h = q s (-> 0).
  integrand = 0.5 * (np.exp(log_p) + np.exp(log_q)) - np.exp(log_q) * h
  integrand = np.nan_to_num(integrand, nan=0.0, posinf=0.0)
  return float(np.trapezoid(np.trapezoid(integrand, t, axis=1), t))


def sample_pair(name: str, key: jax.Array, num_samples: int):
  """n points from P and n from Q of a named pair: two (n, 2) arrays."""
  _check_distribution(name)
  mu_p, s_p, mu_q, s_q = DISTRIBUTIONS[name]
  return _draw(key, jnp.asarray(mu_p, jnp.float32), s_p,
               jnp.asarray(mu_q, jnp.float32), s_q,
               num_samples=int(num_samples))


@functools.partial(jax.jit, static_argnames=("num_samples",))
def _draw(key, mean_p, scale_p, mean_q, scale_q, *, num_samples):
  key_p, key_q = jax.random.split(key)
  p = mean_p + jnp.sqrt(scale_p) * jax.random.normal(key_p, (num_samples, 2))
  q = mean_q + jnp.sqrt(scale_q) * jax.random.normal(key_q, (num_samples, 2))
  return p, q


def num_bins(rule: str, num_samples: int, constant: float) -> int:
  """k for a rule: 'n/10' (mauve-text) or 'n^(1/r)' for r = 2, 3, ...

  'n^(1/r)' gives k = max(2, round(constant * n^(1/r))).
  """
  if rule == "n/10":
    return max(2, int(round(num_samples / 10)))
  if rule.startswith("n^(1/") and rule.endswith(")"):
    r = float(rule[len("n^(1/"):-1])
    return max(2, int(round(constant * num_samples ** (1.0 / r))))
  raise ValueError(f"unknown quantization rule {rule!r}: use 'n/10' or "
                   "'n^(1/r)', e.g. 'n^(1/3)'.")


@jax.jit
def fi_by_estimator(counts_p, counts_q):
  """(len(ESTIMATORS),) FI of the two count vectors under each estimator."""
  out = []
  for method in ESTIMATORS:
    fn = getattr(smoothing, method)
    out.append(frontiers.frontier_integral_from_histograms(
        fn(counts_p), fn(counts_q)))
  return jnp.stack(out)


@functools.partial(jax.jit, static_argnames=("num_samples", "num_clusters"))
def _fi_from_labels(labels, *, num_samples, num_clusters):
  """FI per estimator from the k-means labels of [P sample; Q sample]."""
  counts = [jnp.bincount(lab, length=num_clusters).astype(jnp.float32)
            for lab in (labels[:num_samples], labels[num_samples:])]
  return fi_by_estimator(*counts)


def estimate_errors(name: str, key: jax.Array, *, num_samples: int,
                    num_clusters: int, num_repeats: int, truth: float,
                    max_iters: int = 100) -> np.ndarray:
  """|FI_hat - FI| per repeat and estimator: (num_repeats, len(ESTIMATORS)).

  Each repeat draws n points from P and n from Q (`sample_pair`), clusters
  their union with k-means (k-means++ init, one run), and estimates FI from
  the two cluster-count vectors with every estimator in `ESTIMATORS`.
  """
  _check_distribution(name)
  mu_p, s_p, mu_q, s_q = DISTRIBUTIONS[name]
  params = (jnp.asarray(mu_p, jnp.float32), s_p,
            jnp.asarray(mu_q, jnp.float32), s_q)
  est = []
  # A Python loop over repeats: the jitted k-means is compiled once per
  # (n, k) and reused by every repeat and distribution (vmapping the repeats
  # compiles far more slowly on CPU).
  for i in range(num_repeats):
    key_data, key_kmeans = jax.random.split(jax.random.fold_in(key, i))
    p, q = _draw(key_data, *params, num_samples=int(num_samples))
    fit = quantize.kmeans(jnp.concatenate([p, q]), key=key_kmeans,
                          num_clusters=int(num_clusters),
                          max_iters=int(max_iters))
    est.append(_fi_from_labels(fit.labels, num_samples=int(num_samples),
                               num_clusters=int(num_clusters)))
  return np.abs(np.asarray(est, np.float64) - truth)


def _slope(ns, errors):
  """Least-squares slope of log(error) against log(n)."""
  return float(np.polyfit(np.log(ns), np.log(np.maximum(errors, 1e-12)), 1)[0])


def compute(config) -> dict:
  """Errors of every (distribution, rule, estimator, n) and the findings.

  Args:
    config: `configs/frontier_estimators.py`'s ConfigDict (seed,
      distributions, sample_sizes, rules, constant, num_repeats, max_iters,
      estimator_rule, rate_estimator).

  Returns:
    A JSON-ready dict: per distribution the true FI, the mean and standard
    error of |FI_hat - FI| per rule, estimator and n, log-log slopes, and
    the two findings checked at the largest n.
  """
  ns = [int(n) for n in config.sample_sizes]
  rules = list(config.rules)
  key = jax.random.key(config.seed)
  results = {"sample_sizes": ns, "rules": rules,
             "estimators": list(ESTIMATORS), "constant": config.constant,
             "num_repeats": config.num_repeats,
             "estimator_rule": config.estimator_rule,
             "rate_estimator": config.rate_estimator, "distributions": {}}
  start = time.perf_counter()
  names = list(config.distributions)
  truths = {name: true_frontier_integral(name) for name in names}
  # (distribution, rule) -> per-n mean and standard error, (len(ns), E).
  means = {(d, r): [] for d in names for r in rules}
  ses = {(d, r): [] for d in names for r in rules}
  total, done = len(names) * len(rules) * len(ns), 0
  # n and k outermost: one compilation per (n, k) serves every pair.
  for i, n in enumerate(ns):
    for r, rule in enumerate(rules):
      k = num_bins(rule, n, config.constant)
      for d, name in enumerate(names):
        err = estimate_errors(
            name, jax.random.fold_in(key, (d * 100 + r) * 100 + i),
            num_samples=n, num_clusters=k, num_repeats=config.num_repeats,
            truth=truths[name], max_iters=config.max_iters)
        means[name, rule].append(err.mean(0))
        ses[name, rule].append(
            err.std(0, ddof=1) / math.sqrt(err.shape[0])
            if err.shape[0] > 1 else np.zeros(err.shape[1]))
        done += 1
        logging.info("[%d/%d %.0f s] %s %s n=%d k=%d: %s", done, total,
                     time.perf_counter() - start, name, rule, n, k,
                     " ".join(f"{e}={m:.4f}" for e, m in
                              zip(ESTIMATORS, means[name, rule][-1])))
  for name in names:
    out = {"true_frontier_integral": truths[name], "num_bins": {},
           "mean": {}, "stderr": {}, "slope": {}}
    for rule in rules:
      m, s = np.array(means[name, rule]), np.array(ses[name, rule])
      out["num_bins"][rule] = [num_bins(rule, n, config.constant)
                               for n in ns]
      out["mean"][rule] = {e: m[:, j].tolist()
                           for j, e in enumerate(ESTIMATORS)}
      out["stderr"][rule] = {e: s[:, j].tolist()
                             for j, e in enumerate(ESTIMATORS)}
      out["slope"][rule] = {e: _slope(ns, m[:, j]) if len(ns) > 1
                            else None for j, e in enumerate(ESTIMATORS)}
    out["findings"] = findings(out, config.estimator_rule,
                               config.rate_estimator)
    results["distributions"][name] = out
  results["seconds"] = time.perf_counter() - start
  return results


def findings(out: dict, estimator_rule: str, rate_estimator: str) -> dict:
  """The two findings at the largest n, from one distribution's results.

  Returns:
    {"smoothed_beat_empirical": {estimator: whether its mean error at the
     largest n, k by `estimator_rule`, is below the empirical one's},
     "estimator_errors_at_largest_n": {estimator: error},
     "best_rule": the rule whose `rate_estimator` error is lowest at the
     largest n, "rule_errors_at_largest_n": {rule: error}}.
  """
  at_rule = out["mean"][estimator_rule]
  last = {e: v[-1] for e, v in at_rule.items()}
  by_rule = {rule: v[rate_estimator][-1] for rule, v in out["mean"].items()}
  return {
      "smoothed_beat_empirical": {
          e: bool(last[e] < last["empirical"]) for e in ESTIMATORS
          if e != "empirical"},
      "estimator_errors_at_largest_n": last,
      "best_rule": min(by_rule, key=by_rule.get),
      "rule_errors_at_largest_n": by_rule,
  }


_LABELS = {"empirical": "empirical", "laplace": "Laplace (b=1)",
           "krichevsky_trofimov": "Krichevsky-Trofimov (b=1/2)",
           "braess_sauer": "Braess-Sauer", "good_turing": "Good-Turing"}


def figure(results: dict) -> Figure:
  """Error against n: per estimator (top row) and per rule (bottom row)."""
  names = list(results["distributions"])
  ns = np.array(results["sample_sizes"])
  fig = Figure(figsize=(5.2 * len(names), 8.6))
  axes = np.asarray(fig.subplots(2, len(names), squeeze=False))
  for j, name in enumerate(names):
    out = results["distributions"][name]
    ax = axes[0, j]
    rule = results["estimator_rule"]
    for e in results["estimators"]:
      ax.errorbar(ns, out["mean"][rule][e], yerr=out["stderr"][rule][e],
                  marker="o", markersize=3, capsize=2, label=_LABELS[e])
    ax.set_title(f"{name} (true FI {out['true_frontier_integral']:.4f}):\n"
                 f"estimators, k by {rule}")
    ax = axes[1, j]
    est = results["rate_estimator"]
    for rule in results["rules"]:
      label = ("k = n/10 (mauve-text)" if rule == "n/10" else
               f"k = {results['constant']:g} {rule}")
      ax.errorbar(ns, out["mean"][rule][est], yerr=out["stderr"][rule][est],
                  marker="o", markersize=3, capsize=2, label=label)
    ax.set_title(f"{name}: growth of k, {_LABELS[est]} estimator")
    for ax in axes[:, j]:
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlabel("n (samples per distribution)")
      ax.set_ylabel("mean |FI estimate - FI|")
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=7, frameon=False)
  fig.suptitle("Frontier integral from k-means histograms of 2-D samples "
               "(Liu et al. 2021)")
  fig.tight_layout()
  return fig


def _markdown(results: dict) -> str:
  lines = ["# Frontier-integral estimators (Liu et al. 2021) at CPU scale",
           "", f"n = {results['sample_sizes']}, {results['num_repeats']} "
           f"repeats, k = {results['constant']:g} n^(1/r) or n/10.", ""]
  for name, out in results["distributions"].items():
    f = out["findings"]
    lines += [f"## {name}: true FI {out['true_frontier_integral']:.6f}", "",
              f"Mean |error| at n = {results['sample_sizes'][-1]}, k by "
              f"{results['estimator_rule']}:", "",
              "| estimator | error | beats empirical |", "|---|---|---|"]
    for e, v in f["estimator_errors_at_largest_n"].items():
      beat = "" if e == "empirical" else str(
          f["smoothed_beat_empirical"][e])
      lines.append(f"| {e} | {v:.4f} | {beat} |")
    lines += ["", f"Mean |error| of the {results['rate_estimator']} "
              "estimator by rule (slope of log error vs log n):", "",
              "| rule | k at largest n | error | slope |", "|---|---|---|---|"]
    for rule, v in f["rule_errors_at_largest_n"].items():
      slope = out["slope"][rule][results["rate_estimator"]]
      lines.append(f"| {rule} | {out['num_bins'][rule][-1]} | {v:.4f} | "
                   f"{'n/a' if slope is None else f'{slope:.2f}'} |")
    lines += ["", f"Best rule at the largest n: {f['best_rule']}.", ""]
  return "\n".join(lines)


def run(config, workdir: str) -> Dict:
  """Runs `compute` and writes results.json, table.md and the PNG to workdir.

  The library side of experiments/frontier_estimators.py; returns the
  results dict.
  """
  os.makedirs(workdir, exist_ok=True)
  results = compute(config)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, allow_nan=False)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(_markdown(results))
  figure(results).savefig(os.path.join(workdir, "frontier_estimators.png"),
                          dpi=110)
  for name, out in results["distributions"].items():
    logging.info("%s", json.dumps({"distribution": name,
                                   **out["findings"]}))
  return results
