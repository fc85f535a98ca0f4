"""The samples behind the scores: per-model image grids and a 2-D map.

`sample_figures(inputs, tables)` turns the per-sample tables
(`per_sample.sample_tables`) into PNG figures and the markdown that shows
them, per model:

  least realistic   generated samples with the lowest realism score
                    (improved P/R), the threshold 1 stated;
  likely copies     samples whose NN1/NN2 training-distance ratio is below
                    FLD's copy threshold, each beside its nearest training
                    row, the ratio in the caption;
  uncovered real    real rows whose k-NN ball holds no generated sample
                    (coverage), one grid row per class where labels exist,
                    classes with the largest uncovered share first;
  GEL weights       the generated samples GEL's two-sample fit up-weights
                    most (the model under-represents their region) and
                    down-weights most (over-represented: GEL discounts them);
  2-D map           PCA of the real set (fit once on real, the same axes for
                    every model), real rows grey with the uncovered ones
                    marked, generated samples coloured by the combined
                    suspicion rank.

A grid needs the images of its rows (`EvalInputs.images`: 'real', 'train'
and the model's); without them it is skipped with a note and the map shows
the samples in feature space. Each caption names the column that chose the
rows and its threshold.
"""

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from matplotlib.figure import Figure
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.report.per_sample import SampleTable

PER_GRID = 8          # images per grid row
MAX_CLASSES = 5       # class rows of the uncovered-real grid


def pca_projection(real: np.ndarray) -> Tuple[np.ndarray, np.ndarray,
                                                np.ndarray]:
  """(mean (d,), components (d, 2), explained variance share (2,)) of real.

  Principal axes of the centred real rows by an SVD in float64; each axis
  is signed so that its largest loading is positive (deterministic).
  Project with (x - mean) @ components.
  """
  x = np.asarray(real, np.float64)
  if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
    raise ValueError(f"the 2-D map needs (n >= 3, d >= 2) real features; got "
                     f"shape {x.shape}.")
  mean = x.mean(axis=0)
  _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
  comps = vt[:2].T
  signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), [0, 1]])
  comps = comps * np.where(signs == 0, 1.0, signs)
  var = s ** 2
  return mean, comps, var[:2] / max(var.sum(), 1e-300)


def _show(ax, image):
  """One image: 2-D (gray, ink = high as in the digits) or RGB."""
  img = np.asarray(image)
  if img.dtype == np.uint8:
    img = img / 255.0
  img = np.squeeze(np.asarray(img, np.float64))
  if img.ndim == 2:
    ax.imshow(img, cmap="gray_r", vmin=0.0, vmax=max(1.0, float(img.max())))
  else:
    ax.imshow(np.clip(img, 0.0, 1.0))
  ax.set_xticks([])
  ax.set_yticks([])


def image_grid(rows: Sequence[Sequence[Tuple[np.ndarray, str]]],
               row_labels: Sequence[str], title: str) -> Figure:
  """A grid: one list of (image, caption) per grid row."""
  cols = max(1, max(len(r) for r in rows))
  fig = Figure(figsize=(1.05 * cols + 1.2, 1.25 * len(rows) + 0.5))
  axes = fig.subplots(len(rows), cols, squeeze=False)
  for r, (cells, label) in enumerate(zip(rows, row_labels)):
    for c in range(cols):
      ax = axes[r, c]
      if c >= len(cells):
        ax.axis("off")
        continue
      _show(ax, cells[c][0])
      ax.set_title(cells[c][1], fontsize=6)
    axes[r, 0].set_ylabel(label, fontsize=7)
  fig.suptitle(title, fontsize=8)
  return fig


def _fmt(v: float) -> str:
  return f"{v:.3g}"


def _least_real(g: SampleTable, images) -> Optional[tuple]:
  if "realism" not in g.columns:
    return None
  col = g.columns["realism"]
  rows = g.most_suspicious("realism", PER_GRID)
  below = int(np.sum(col.values < col.info.threshold))
  fig = image_grid([[(images[i], f"#{i} {_fmt(g.full('realism')[i])}")
                     for i in rows]], ["lowest realism"],
                   "Least realistic generated samples (realism score)")
  caption = (f"Chosen by `realism` (precision_recall): the {len(rows)} "
             f"lowest realism scores; {below} of {len(col.values)} samples "
             f"are below the threshold {col.info.threshold:g} (outside the "
             "pruned real manifold).")
  return "least_real", fig, caption


def _copies(g: SampleTable, images, train_images) -> Optional[tuple]:
  if "nn_ratio" not in g.columns or "nearest_train" not in g.columns:
    return None
  col = g.columns["nn_ratio"]
  threshold = col.info.threshold
  flagged = int(np.sum(col.values < threshold))
  if not flagged:
    return None, None, (f"Likely copies: none (`nn_ratio` (fld) below the "
                        f"threshold {threshold:.3g} for no sample).")
  rows = g.most_suspicious("nn_ratio", min(flagged, PER_GRID // 2))
  nearest = g.full("nearest_train").astype(np.int64)
  ratio = g.full("nn_ratio")
  cells = []
  for i in rows:
    cells += [(images[i], f"gen #{i}\nratio {ratio[i]:.3f}"),
              (train_images[nearest[i]], f"train #{nearest[i]}")]
  fig = image_grid([cells], ["copy | train"], "Likely copies (left) beside "
                   "their nearest training rows (right)")
  caption = (f"Chosen by `nn_ratio` (fld): nearest / second-nearest training "
             f"distance below the copy threshold {threshold:.3g} for "
             f"{flagged} of {len(col.values)} samples; the {len(rows)} "
             "lowest ratios, each beside its nearest training row.")
  return "copies", fig, caption


def _uncovered(r: SampleTable, images, labels) -> Optional[tuple]:
  if "uncovered" not in r.columns:
    return None
  flags = r.full("uncovered") > 0.5
  if not flags.any():
    return None, None, ("Uncovered real rows: none (every real row's k-NN "
                        "ball holds a generated sample).")
  order = r.most_suspicious("uncovered", int(flags.sum()))
  groups = {"uncovered": order} if labels is None else {}
  shares = []
  if labels is not None:
    labels = np.asarray(labels)
    for c in np.unique(labels):
      share = float(flags[labels == c].mean())
      shares.append((share, int(c)))
    shares.sort(key=lambda t: (-t[0], t[1]))
    for share, c in shares[:MAX_CLASSES]:
      if share > 0:
        groups[f"class {c}: {share:.0%}"] = order[labels[order] == c]
  fig = image_grid([[(images[i], f"#{i}") for i in rows[:PER_GRID]]
                    for rows in groups.values()], list(groups),
                   "Real rows the model fails to cover")
  caption = (f"Chosen by `uncovered` (precision_recall, coverage): real rows "
             f"whose k-NN ball holds no generated sample (flag = 1, threshold "
             f"0.5): {int(flags.sum())} of {len(flags)}.")
  if shares:
    caption += " Share uncovered per class: " + ", ".join(
        f"{c}: {s:.0%}" for s, c in sorted(shares, key=lambda t: t[1])) + "."
  return "uncovered", fig, caption


def _gel(g: SampleTable, images) -> Optional[tuple]:
  if "gel_generated_weight" not in g.columns:
    return None
  col = g.columns["gel_generated_weight"]
  low = g.most_suspicious("gel_generated_weight", PER_GRID)
  high = col.rows[np.lexsort((col.rows, -col.values))[:PER_GRID]]
  w = g.full("gel_generated_weight")
  fig = image_grid([[(images[i], f"#{i} w {_fmt(w[i])}") for i in high],
                    [(images[i], f"#{i} w {_fmt(w[i])}") for i in low]],
                   ["up-weighted", "down-weighted"],
                   "Generated samples GEL re-weights most (m x weight)")
  caption = (f"Chosen by `gel_generated_weight` (gel, m x the two-sample "
             f"weight, 1 = uniform, over the {len(col.values)} rows GEL "
             f"used): top row the {len(high)} largest (regions the model "
             f"under-represents), bottom row the {len(low)} smallest (regions "
             "it over-represents, which GEL discounts).")
  return "gel", fig, caption


def feature_map(inputs: EvalInputs, model: str, g: SampleTable,
                r: Optional[SampleTable], projection) -> Figure:
  """PCA map: real rows grey (uncovered ones marked), samples by suspicion."""
  mean, comps, share = projection
  real = (np.asarray(inputs.real, np.float64) - mean) @ comps
  gen = (np.asarray(inputs.generated[model], np.float64) - mean) @ comps
  fig = Figure(figsize=(5.6, 4.4))
  ax = fig.subplots()
  ax.scatter(real[:, 0], real[:, 1], s=6, color="#b0b0b0", label="real")
  if r is not None and "uncovered" in r.columns:
    miss = r.full("uncovered") > 0.5
    ax.scatter(real[miss, 0], real[miss, 1], s=14, marker="x",
               color="#d62728", linewidths=0.8, label="real, uncovered")
  scored = np.isfinite(g.suspicion)
  dots = ax.scatter(gen[scored, 0], gen[scored, 1], s=7,
                    c=g.suspicion[scored], cmap="plasma", vmin=0.0, vmax=1.0,
                    label=f"{model} (colour: suspicion)")
  top = np.argsort(g.rank)[:PER_GRID]
  ax.scatter(gen[top, 0], gen[top, 1], s=40, facecolors="none",
             edgecolors="black", linewidths=0.8, label="most suspicious")
  fig.colorbar(dots, ax=ax, label="combined suspicion (1 = most)")
  ax.set_xlabel(f"PC1 of real ({share[0]:.0%} of variance)")
  ax.set_ylabel(f"PC2 of real ({share[1]:.0%})")
  ax.legend(fontsize=6, loc="best")
  ax.set_title(f"{model}: real vs generated on the real set's PCA plane",
               fontsize=8)
  return fig


def _top_table(g: SampleTable, count: int = 5) -> List[str]:
  names = [n for n, c in g.columns.items()
           if c.info.higher_is_suspicious is not None]
  head = ["rank", "sample", "suspicion"] + [f"`{n}`" for n in names]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for i in np.argsort(g.rank)[:count]:
    cells = [str(g.rank[i]), str(i), _fmt(g.suspicion[i])] + [
        "" if not np.isfinite(v) else _fmt(v)
        for v in (g.full(n)[i] for n in names)]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def sample_figures(inputs: EvalInputs,
                   tables: Mapping[str, Mapping[str, SampleTable]],
                   samples_file: str = "samples.json"
                   ) -> Tuple[Dict[str, Figure], str]:
  """({file name: Figure}, markdown) of the grids and maps of every model."""
  figures: Dict[str, Figure] = {}
  if not tables:
    return figures, ""
  lines = ["## Samples behind the scores", "",
           f"Every family's per-sample quantities, joined per model in "
           f"`{samples_file}`: one table over the model's samples and one "
           "over the real rows, each column with its direction, and a "
           "combined suspicion = the mean over ranked columns of the row's "
           "rank percentile (1 = most suspicious; a capped family's column "
           "counts only for the rows it scored).", ""]
  try:
    projection = pca_projection(inputs.real)
  except ValueError as e:
    projection = None
    lines += [f"- 2-D map skipped: {e}", ""]
  images = {**inputs.image_rows, **inputs.images}
  for i, (model, sides) in enumerate(tables.items()):
    g, r = sides["generated"], sides.get("real")
    lines += [f"### {model}" + (f" ({inputs.failures[model]})"
                                if inputs.failures.get(model) else ""), ""]
    lines += ["Most suspicious samples (combined rank):", ""]
    lines += _top_table(g) + [""]
    grids = []
    if model in images:
      grids += [_least_real(g, images[model]), _gel(g, images[model])]
      if "train" in images:
        grids.append(_copies(g, images[model], images["train"]))
    if "real" in images and r is not None:
      grids.append(_uncovered(r, images["real"], inputs.real_labels))
    if model not in images:
      lines += [f"- No images of {model}'s samples: image grids skipped; "
                "the 2-D map shows them in feature space.", ""]
    for grid in grids:
      if grid is None:
        continue
      kind, fig, caption = grid
      if fig is not None:
        name = f"samples_{i}_{_safe(model)}_{kind}.png"
        figures[name] = fig
        lines += [f"![{model} {kind}]({name})", ""]
      lines += [f"*{caption}*", ""]
    if projection is not None:
      name = f"samples_{i}_{_safe(model)}_map.png"
      figures[name] = feature_map(inputs, model, g, r, projection)
      lines += [f"![{model} map]({name})", "",
                "*2-D map: PCA of the real set (fit once on real; the same "
                "axes for every model); generated samples coloured by the "
                "combined suspicion, the most suspicious circled; red x: "
                "real rows the model does not cover.*", ""]
  return figures, "\n".join(lines)
