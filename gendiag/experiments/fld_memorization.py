"""FLD and memorisation: the library side of experiments/fld_memorization.py.

A labelled Gaussian mixture is split into a training and a test set; the
simulated models copy a growing fraction of training samples (exactly, and
with small noise), drop classes, blur (shrink towards class means) or add
noise. `run(config, workdir)` scores each with FLD, the gap, AuthPct, C_T
(the report's "fld" family's pieces), FID and improved precision/recall side
by side.
"""

import json
import os

from absl import logging
import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag import jsonl
from gendiag.data import synthetic
from gendiag.metrics import fld as fld_lib
from gendiag.metrics import frechet
from gendiag.metrics import memorization
from gendiag.metrics import precision_recall
from gendiag.ops import knn
from gendiag.report.families import fld as fld_family


def _scenarios(cfg, key):
  """Train/test split of a labelled mixture and the simulated models."""
  keys = jax.random.split(key, 8)
  mixture = synthetic.make_mixture(keys[0], num_classes=cfg.num_classes,
                                   dim=cfg.dim, separation=cfg.separation)
  total = cfg.num_train + cfg.num_test
  real, labels = synthetic.sample_mixture(keys[1], mixture, total)
  train, test = np.asarray(real[:cfg.num_train]), np.asarray(
      real[cfg.num_train:])
  fresh, fresh_labels = synthetic.sample_mixture(keys[2], mixture,
                                                 cfg.num_generated)
  models = {}
  for f in cfg.copy_fractions:
    x, _ = synthetic.memorize(keys[3], fresh, train, fraction=float(f))
    models[f"copy_{f:g}"] = ("copies", float(f), np.asarray(x))
  nn = _typical_nn_distance(train)
  for f in cfg.noisy_copy_fractions:
    x, _ = synthetic.memorize(keys[4], fresh, train, fraction=float(f),
                              noise_std=cfg.noisy_copy_scale * nn / np.sqrt(
                                  cfg.dim))
    models[f"noisy_copy_{f:g}"] = ("noisy copies", float(f), np.asarray(x))
  x, _ = synthetic.drop_classes(keys[5], fresh, fresh_labels,
                                tuple(cfg.dropped_classes), cfg.num_generated)
  models["dropped"] = ("dropped classes", 0.0, np.asarray(x))
  models["blurred"] = ("blur", 0.0, np.asarray(synthetic.shrink(
      fresh, fresh_labels, factor=cfg.shrink_factor)))
  models["noisy"] = ("noise", 0.0, np.asarray(synthetic.add_noise(
      keys[6], fresh, std=cfg.noise_std)))
  return train, test, models


def _typical_nn_distance(train) -> float:
  return float(np.median(np.asarray(knn.knn_radii(
      np.asarray(train), [1]))[:, 0]))


def _precision_recall(real, gen) -> dict:
  res = precision_recall.improved_precision_recall(real, gen, k=3)
  return {"precision": float(res.precision), "recall": float(res.recall)}


def run(config, workdir: str) -> dict:
  """FLD, gap, AuthPct, C_T, FID and P/R as the copied fraction grows.

  Writes metrics.jsonl (one JSON line per model), results.json, report.md and
  fld_memorization.png into `workdir`; returns the results dict.
  """
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(config.seed)
  data_key, metric_key = jax.random.split(key)
  train, test, models = _scenarios(config.data, data_key)
  cfg = dict(fld_family.DEFAULTS)
  cfg.update(dict(config.fld))
  base = fld_lib.fld_baseline(train, test, key=metric_key,
                              size=fld_lib.default_baseline_size(
                                  len(train), config.data.num_generated),
                              max_epochs=cfg["max_epochs"])
  results = {}
  with jsonl.JsonLinesWriter(os.path.join(workdir, "metrics.jsonl"),
                             mode="w") as log:
    for i, (name, (kind, fraction, gen)) in enumerate(models.items()):
      k = jax.random.fold_in(metric_key, i)
      res = fld_lib.fld(train, test, gen, key=k, baseline_nll=float(base.nll),
                        max_epochs=cfg["max_epochs"])
      flags = memorization.copy_flags(train, gen,
                                      threshold=cfg["copy_threshold"])
      row = {
          "model": name, "kind": kind, "copied_fraction": fraction,
          "fld": float(res.fld), "fld_gap": float(res.gap),
          "fld_train": float(res.fld_train),
          "fit_converged": bool(res.converged),
          "copies_flagged": int(flags.num_flagged),
          "auth_pct": float(memorization.auth_pct(train, gen, key=k).auth_pct),
          "fid_test": float(frechet.fid(test, gen).fid),
          "fid_train": float(frechet.fid(train, gen).fid),
      }
      ct, why = fld_family.data_copying(train, test, gen, k, cfg)
      row["c_t"] = None if ct is None else float(ct.c_t)
      if why:
        row["c_t_note"] = why
      row.update(_precision_recall(test, gen))
      results[name] = row
      log.write(row)
      logging.info("%s: FLD %.3g gap %.3g copies %d AuthPct %.3g FID %.3g",
                   name, row["fld"], row["fld_gap"], row["copies_flagged"],
                   row["auth_pct"], row["fid_test"])
  out = {"baseline_nll": float(base.nll), "num_train": len(train),
         "num_test": len(test), "dim": int(train.shape[1]),
         "models": results}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=2)
  _experiment_figure(results).savefig(
      os.path.join(workdir, "fld_memorization.png"), dpi=110,
      bbox_inches="tight")
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(_experiment_markdown(out))
  return out


_COLUMNS = ("fld", "fld_gap", "copies_flagged", "auth_pct", "c_t", "fid_test",
            "fid_train", "precision", "recall")


def _experiment_markdown(out) -> str:
  lines = ["# FLD and memorisation", "",
           f"{out['num_train']} training, {out['num_test']} test samples, "
           f"d = {out['dim']}; baseline C = {out['baseline_nll']:.4f} nats/dim. "
           "FLD and the gap should react to copying; FID against the training "
           "set falls as copies grow (it rewards them).", "",
           "| model | " + " | ".join(_COLUMNS) + " |",
           "|---|" + "---|" * len(_COLUMNS)]
  for name, row in out["models"].items():
    cells = ["n/a" if row.get(c) is None else f"{row[c]:.4g}"
             for c in _COLUMNS]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += ["", "![FLD and memorisation](fld_memorization.png)", ""]
  return "\n".join(lines)


def _experiment_figure(results) -> Figure:
  panels = [("fld", "FLD"), ("fld_gap", "FLD gap"), ("auth_pct", "AuthPct"),
            ("c_t", "C_T"), ("fid_test", "FID vs test"),
            ("fid_train", "FID vs train"), ("precision", "precision"),
            ("recall", "recall")]
  fig = Figure(figsize=(13, 6))
  axes = fig.subplots(2, 4).ravel()
  for ax, (metric, title) in zip(axes, panels):
    for kind, style in (("copies", "o-"), ("noisy copies", "s--")):
      rows = sorted((r for r in results.values()
                     if r["kind"] == kind or (kind == "noisy copies"
                                              and r["copied_fraction"] == 0
                                              and r["kind"] == "copies")),
                    key=lambda r: r["copied_fraction"])
      xs = [r["copied_fraction"] for r in rows if r.get(metric) is not None]
      ys = [r[metric] for r in rows if r.get(metric) is not None]
      if xs:
        ax.plot(xs, ys, style, label=kind, markersize=4)
    for r in results.values():
      if r["kind"] not in ("copies", "noisy copies") and r.get(
          metric) is not None:
        ax.axhline(r[metric], linestyle=":", linewidth=0.8, color="gray")
        ax.annotate(r["model"], (1.0, r[metric]), fontsize=6, color="gray",
                    ha="right", va="bottom")
    if metric in ("fld", "fld_gap"):   # a copycat sends them to ~1e16
      ax.set_yscale("symlog", linthresh=10.0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("copied fraction", fontsize=8)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  return fig
