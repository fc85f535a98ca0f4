"""The PR-divergence trade-off experiment: `run(config, workdir)`.

The library side of experiments/pr_tradeoff.py (config:
configs/pr_tradeoff.py). It runs the lambda sweep of `gendiag.flows.sweep`
on each configured dataset ('ring': 8 Gaussians on a circle, 'grid': 25 on
a square grid, `gendiag.data.synthetic`; 'digits': scikit-learn's digits
embedded by the shipped CNN (`gendiag.features`, as the main job does),
reduced by PCA to `pca_dim` dimensions fitted on the flow's training rows,
because k-NN precision/recall on ~700 held-out rows is too coarse in 64-d
and a flow on ~1,000 rows of 64-d features overfits; all from
`gendiag.data.flow_datasets.load_split`) and writes `tradeoff.json`,
`tradeoff.md`, `tradeoff.png` (recall, precision per run) and `samples.png`
(samples over the test rows, first two coordinates).

References:
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023.
"""

import json
import os
import time
from typing import Sequence

from absl import logging
import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag import experiments
from gendiag import jsonl
from gendiag.data import flow_datasets
from gendiag.flows import models
from gendiag.flows import sweep
from gendiag.flows import sweep_objectives
from gendiag.flows import trainer


def _fmt(mean, std):
  if mean is None:
    return "—"
  if std is None:
    return f"{mean:.3f}"
  return f"{mean:.3f} ± {std:.3f}"


def markdown_table(result: sweep.TradeoffResult) -> str:
  """A markdown table: objective, lam, precision, recall, PRD F_8, F_1/8
  and the critic's train / held-out gap (`critic_gap`).

  With several seeds each cell is mean ± std over seeds.
  """
  lines = [
      f"| objective | lam | precision (k={result.k}) | recall (k={result.k}) "
      "| PRD F_8 | PRD F_1/8 | critic gap |",
      "| --- | --- | --- | --- | --- | --- | --- |"]
  for row in result.rows():
    lam = "" if row["lam"] is None else f"{row['lam']:g}"
    name = "PR" if row["objective"] == "pr" else row["label"]
    lines.append(
        f"| {name} | {lam} | {_fmt(row['precision'], row['precision_std'])} "
        f"| {_fmt(row['recall'], row['recall_std'])} "
        f"| {_fmt(row['prd_f_beta'], row['prd_f_beta_std'])} "
        f"| {_fmt(row['prd_f_inv_beta'], row['prd_f_inv_beta_std'])} "
        f"| {_fmt(row['critic_gap'], row['critic_gap_std'])} |")
  pre_p = np.asarray(result.pretrained_precision)
  pre_r = np.asarray(result.pretrained_recall)
  lines.append(f"| (MLE pretrained start) | | {pre_p.mean():.3f} "
               f"| {pre_r.mean():.3f} | | | |")
  return "\n".join(lines)


def _colors(result):
  """A viridis colour per PR run (by log lam), fixed ones for baselines."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  lams = np.asarray(result.lams)
  pr = lams[~np.isnan(lams)]
  lo, hi = (np.log(pr.min()), np.log(pr.max())) if len(pr) else (0.0, 1.0)
  cmap = colormaps["viridis"]
  fixed = {"mle": "tab:red", "reverse_kl": "tab:orange"}
  out = []
  for name, lam in zip(result.objectives, lams):
    if name == "pr":
      t = 0.5 if hi == lo else (np.log(lam) - lo) / (hi - lo)
      out.append(cmap(0.9 * t))
    else:
      out.append(fixed[name])
  return out


def plot_tradeoff(result: sweep.TradeoffResult, ax, *, curves: bool = False):
  """Draws each run's (recall, precision) on `ax` (mean, std bars).

  Args:
    result: a sweep.TradeoffResult.
    ax: a matplotlib Axes.
    curves: also draw each run's PRD curve (thin lines).
  """
  colors = _colors(result)
  for i, (name, label) in enumerate(zip(result.objectives, result.labels)):
    p = np.asarray(result.precision[i])
    r = np.asarray(result.recall[i])
    marker = "o" if name == "pr" else ("s" if name == "mle" else "D")
    ax.errorbar(r.mean(), p.mean(),
                xerr=r.std() if len(r) > 1 else None,
                yerr=p.std() if len(p) > 1 else None, fmt=marker,
                color=colors[i], label=label, markersize=7, capsize=2)
    if curves:
      ax.plot(np.asarray(result.prd_recall[i]),
              np.asarray(result.prd_precision[i]), color=colors[i], lw=0.8,
              alpha=0.6)
  ax.plot(np.asarray(result.pretrained_recall).mean(),
          np.asarray(result.pretrained_precision).mean(), "x", color="grey",
          label="MLE start")
  ax.set_xlabel(f"recall (improved, k={result.k})")
  ax.set_ylabel(f"precision (improved, k={result.k})")
  ax.set_title(result.dataset)
  ax.grid(alpha=0.3)


def tradeoff_figure(results: Sequence[sweep.TradeoffResult]) -> Figure:
  """One panel per dataset: the achieved (recall, precision) of every run."""
  fig = Figure(figsize=(4.2 * len(results), 4.0), layout="constrained")
  axes = fig.subplots(1, len(results), squeeze=False)[0]
  for ax, result in zip(axes, results):
    plot_tradeoff(result, ax)
  axes[-1].legend(fontsize=7, loc="best")
  return fig


def samples_figure(results: Sequence[sweep.TradeoffResult],
                   tests: Sequence[np.ndarray], *,
                   max_points: int = 1000) -> Figure:
  """A grid of scatter plots: a row per dataset, a column per run.

  Each panel shows the run's first-seed samples (coloured) over the test
  rows (grey), first two coordinates (the PCA's leading two for digits).
  """
  num_runs = max(len(r.objectives) for r in results)
  fig = Figure(figsize=(2.2 * num_runs, 2.3 * len(results)),
               layout="constrained")
  axes = fig.subplots(len(results), num_runs, squeeze=False)
  for row, (result, test) in zip(axes, zip(results, tests)):
    test = np.asarray(test)[:max_points]
    lo = np.percentile(test[:, :2], 0.5, axis=0)
    hi = np.percentile(test[:, :2], 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    colors = _colors(result)
    for j, ax in enumerate(row):
      ax.set_xticks([])
      ax.set_yticks([])
      if j >= len(result.objectives):
        ax.axis("off")
        continue
      x = np.asarray(result.samples[j])[:max_points]
      ax.scatter(test[:, 0], test[:, 1], s=1, color="0.75")
      ax.scatter(x[:, 0], x[:, 1], s=1, color=colors[j])
      ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
      ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
      ax.set_title(f"{result.labels[j]}\nP {float(result.precision[j, 0]):.2f}"
                   f" R {float(result.recall[j, 0]):.2f}", fontsize=8)
      if j == 0:
        ax.set_ylabel(result.dataset)
  return fig


def merged_settings(config, name: str) -> dict:
  """Dataset `name`'s settings: sections and num_seeds, overridden.

  The config's flow, pretrain, finetune and objective sections and
  num_seeds, with the fields of `config.overrides[name]` replacing theirs.
  """
  cfg = {"flow": config.flow.to_dict(), "pretrain": config.pretrain.to_dict(),
         "finetune": config.finetune.to_dict(),
         "objective": config.objective.to_dict(),
         "num_seeds": int(config.num_seeds)}
  overrides = config.get("overrides", {})
  for section, values in dict(overrides.get(name, {})).items():
    if section not in cfg:
      raise ValueError(f"overrides.{name}.{section}: unknown; choose from "
                       f"{sorted(cfg)}.")
    cfg[section] = (int(values) if section == "num_seeds"
                    else {**cfg[section], **dict(values)})
  return cfg


def run(config, workdir: str) -> dict:
  """Runs the sweep on every `config.datasets` entry; writes the results.

  Files in `workdir`: tradeoff.json ({'meta', 'datasets': {name: {'info',
  'runs': [row...], 'monotone'}}}), tradeoff.md (a table per dataset),
  tradeoff.png and samples.png, and metrics.jsonl (a line per dataset as
  it finishes).

  Returns:
    The JSON dict written to tradeoff.json.
  """
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(config.seed)
  results, tests, out = [], [], {}
  start = time.perf_counter()
  with jsonl.JsonLinesWriter(os.path.join(workdir, "metrics.jsonl"),
                             mode="w") as log:
    for i, name in enumerate(config.datasets):
      key_data, key_sweep = jax.random.split(jax.random.fold_in(key, i))
      train, test, info = flow_datasets.load_split(
          name, key=key_data, num_train=config.data.num_train,
          num_test=config.data.num_test, pca_dim=config.data.pca_dim,
          extractor=config.data.extractor,
          test_fraction=config.data.test_fraction)
      cfg = merged_settings(config, name)
      flow_cfg = dict(cfg["flow"])
      flow_cfg["hidden_sizes"] = tuple(flow_cfg["hidden_sizes"])
      settings = sweep_objectives.ObjectiveSettings.from_dict(cfg["objective"])
      logging.info("pr_tradeoff: dataset %s (%d/%d): %s", name, i + 1,
                   len(config.datasets), info)
      result = sweep.pr_tradeoff_sweep(
          train, test, key=key_sweep, lams=tuple(config.lams),
          baselines=tuple(config.baselines),
          flow=models.Flow(dim=info["dim"], **flow_cfg),
          pretrain=trainer.TrainConfig(**cfg["pretrain"]),
          finetune=trainer.TrainConfig(**cfg["finetune"]),
          objective=settings, num_seeds=cfg["num_seeds"],
          k=config.eval.k, prd_clusters=config.eval.prd_clusters,
          prd_runs=config.eval.prd_runs, dataset=name)
      results.append(result)
      tests.append(test)
      out[name] = {"info": info, "settings": cfg, "runs": result.rows(),
                   "pretrained": {
                       "precision": np.asarray(
                           result.pretrained_precision).tolist(),
                       "recall": np.asarray(
                           result.pretrained_recall).tolist()},
                   "monotone": sweep.is_monotone(result)}
      log.write({"dataset": name, **out[name]})
      logging.info("pr_tradeoff: %s done (%.0f s so far); monotone: %s", name,
                   time.perf_counter() - start, out[name]["monotone"])
  meta = {"config": json.loads(config.to_json()),
          "seconds": time.perf_counter() - start,
          "versions": experiments.package_versions(
              ("jax", "flax", "distrax", "optax"))}
  payload = {"meta": meta, "datasets": out}
  with open(os.path.join(workdir, "tradeoff.json"), "w") as f:
    json.dump(payload, f, indent=1)
  with open(os.path.join(workdir, "tradeoff.md"), "w") as f:
    f.write(_markdown(results, out))
  tradeoff_figure(results).savefig(os.path.join(workdir, "tradeoff.png"),
                                   dpi=110)
  samples_figure(results, tests).savefig(
      os.path.join(workdir, "samples.png"), dpi=110)
  logging.info("pr_tradeoff: wrote %s (%.0f s)", workdir, meta["seconds"])
  return payload


def _markdown(results, out) -> str:
  parts = ["# Precision-recall trade-off of PR-divergence flows\n",
           "Flows pretrained by maximum likelihood, then fine-tuned with each "
           "objective; improved precision/recall and PRD of their samples "
           "against held-out real rows (mean ± std over seeds when several)."
           "\n"]
  for result in results:
    info = out[result.dataset]["info"]
    mono = out[result.dataset]["monotone"]
    parts.append(f"## {result.dataset} ({info['dim']}-d, "
                 f"{info['num_train']} train / {info['num_test']} test rows)\n")
    parts.append(markdown_table(result) + "\n")
    parts.append(
        f"Precision rises with lam: {mono['precision_rises']} (within "
        f"sampling noise: {mono.get('precision_rises_within_noise')}; "
        f"largest vs smallest lam: "
        f"{mono.get('precision_rises_end_to_end')}); recall falls: "
        f"{mono['recall_falls']} (within noise: "
        f"{mono.get('recall_falls_within_noise')}; largest vs smallest: "
        f"{mono.get('recall_falls_end_to_end')}); MLE on the recall side: "
        f"{mono['mle_on_recall_side']}.\n")
  parts.append("![trade-off](tradeoff.png)\n\n![samples](samples.png)\n")
  return "\n".join(parts)
