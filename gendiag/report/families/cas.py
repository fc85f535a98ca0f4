"""Report family "cas": Classification Accuracy Score of labelled models.

The real set (images when `inputs.images` has them, else features) is split
once, stratified by class, into a CAS training half and a CAS test half.
Every model's labelled samples train the fixed recipe (label-matched to the
training half, as the paper does) and are scored on the test half; the same
recipe trained on the training half is the "real" reference. Every model
uses the same key, so all rows share seeds, initialisations and minibatch
positions: differences between models are paired.

`gendiag.experiments.cas` runs this family alone on the simulated digit
models with the full NAS sweep (experiments/cas.py).
"""

from typing import Dict, Sequence

from absl import logging
import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag.data import digits
from gendiag.data.inputs import EvalInputs
from gendiag.metrics import cas as cas_lib
from gendiag.metrics import cas_training
from gendiag.ops import intervals as ci_lib
from gendiag.report import registry
from gendiag.report import render

DEFAULTS = dict(num_seeds=3, top_k=2, nas_fractions=(1.0,), test_fraction=0.5,
                architecture="mlp", hidden=(128,), steps=400, batch_size=64,
                learning_rate=3e-3, weight_decay=1e-4, gap_threshold=0.03,
                sample_grid=True)

DESCRIPTION = (
    "Classification Accuracy Score (Ravuri & Vinyals 2019): a fixed "
    "classifier recipe is trained only on each model's labelled samples "
    "(one per real training example of the same class) and tested on "
    "held-out real data; `cas_real` is the same recipe trained on real "
    "data, `cas_gap` = real - CAS (higher = worse), `nas_*` the naive "
    "augmentation score (real plus that share of generated samples). "
    "The real-vs-real reference of `cas` is `cas_real` (the classifier "
    "trained on as many real examples). "
    "Intervals: 95% t-intervals over classifier seeds (training noise "
    "only, not the test sample). Verdict rules: a class at 0% in every "
    "seed is reported as not learnable from the model's samples; a gap "
    "above `gap_threshold` (default 0.03) whose interval excludes 0 is "
    "reported as a CAS shortfall. CAS is blind to memorisation (copies "
    "score like real data) and, since training sets are label-matched, "
    "mostly to class imbalance.")


def _recipe(cfg) -> cas_training.Recipe:
  return cas_training.Recipe(
      architecture=cfg["architecture"], hidden=tuple(cfg["hidden"]),
      steps=int(cfg["steps"]), batch_size=int(cfg["batch_size"]),
      learning_rate=float(cfg["learning_rate"]),
      weight_decay=float(cfg["weight_decay"]))


def _pick_inputs(inputs: EvalInputs, models: Sequence[str]):
  """(real, {model: samples}, 'images' | 'features')."""
  if "real" in inputs.images and all(m in inputs.images for m in models):
    return (np.asarray(inputs.images["real"]),
            {m: np.asarray(inputs.images[m]) for m in models}, "images")
  return inputs.real, {m: inputs.generated[m] for m in models}, "features"


def per_class_table(results: Dict[str, cas_lib.CASResult]) -> str:
  """Markdown: per-class accuracy (%) of the real reference and each model."""
  first = next(iter(results.values()))
  classes = range(first.num_classes)
  lines = ["| trained on | " + " | ".join(str(c) for c in classes) + " |",
           "|" + "---|" * (first.num_classes + 1)]
  rows = {"real (reference)": np.asarray(first.real_per_class).mean(0)}
  rows.update({m: np.asarray(r.per_class).mean(0) for m, r in results.items()})
  for name, acc in rows.items():
    cells = [f"**{100 * a:.0f}**" if a == 0 else f"{100 * a:.0f}"
             for a in acc]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def per_class_figure(results: Dict[str, cas_lib.CASResult]) -> Figure:
  """Per-class test accuracy of each model against the real reference."""
  first = next(iter(results.values()))
  num_classes = first.num_classes
  fig = Figure(figsize=(2.6 + 0.55 * num_classes, 3.4))
  ax = fig.subplots()
  width = 0.8 / len(results)
  x = np.arange(num_classes)
  for i, (name, r) in enumerate(results.items()):
    ax.bar(x - 0.4 + width * (i + 0.5), np.asarray(r.per_class).mean(0),
           width, label=name)
  real = np.asarray(first.real_per_class).mean(0)
  ax.step(np.concatenate([x - 0.5, [num_classes - 0.5]]),
          np.concatenate([real, real[-1:]]), where="post", color="black",
          linewidth=1.5, label="real (reference)")
  ax.set_xticks(x)
  ax.set_xlabel("class")
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1.05)
  ax.set_title("CAS per class: classifier trained on each model's samples")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  return fig


def cas_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "cas", **DEFAULTS)
  out = registry.FamilyOutput()
  models = [m for m in inputs.generated if m in inputs.generated_labels]
  skipped = [m for m in inputs.generated if m not in inputs.generated_labels]
  if skipped:
    out.notes.append(f"no labels for {', '.join(skipped)}: CAS skipped.")
  if not models:
    return out
  real, samples, kind = _pick_inputs(inputs, models)
  labels = np.asarray(inputs.real_labels)
  counts = np.bincount(labels)
  if np.any(counts[counts > 0] < 2):
    out.notes.append("CAS skipped: every real class needs at least 2 samples "
                     "(one to train on, one to test on).")
    return out
  split_key, cas_key = jax.random.split(key)
  parts = digits.split(labels, {"train": 1.0 - cfg["test_fraction"],
                                "test": cfg["test_fraction"]}, key=split_key)
  recipe = _recipe(cfg)
  out.notes.append(
      f"CAS on {kind} with a {recipe.architecture} {tuple(recipe.hidden)} "
      f"recipe, {recipe.steps} AdamW steps of {recipe.batch_size}; real set "
      f"split into {len(parts['train'])} training and {len(parts['test'])} "
      f"test examples; {cfg['num_seeds']} seeds.")
  results = {}
  for name in models:
    res = cas_lib.classification_accuracy_score(
        real[parts["train"]], samples[name], real_labels=labels[parts["train"]],
        generated_labels=np.asarray(inputs.generated_labels[name]),
        test=real[parts["test"]],
        test_labels=labels[parts["test"]], key=cas_key,
        num_classes=int(labels.max()) + 1, num_seeds=int(cfg["num_seeds"]),
        top_k=int(cfg["top_k"]), nas_fractions=tuple(cfg["nas_fractions"]),
        recipe=recipe)
    results[name] = res
    zero = np.flatnonzero(np.asarray(res.zero_classes)).tolist()
    # Reference: the recipe trained on the real training half (same size,
    # same seeds), already part of every CASResult.
    entries = {
        "cas": registry.entry(res.cas, ci=ci_lib.mean_interval(res.top1),
                              std=res.cas_std, zero_classes=zero,
                              missing_classes=np.flatnonzero(
                                  np.asarray(res.missing_classes)).tolist(),
                              per_class=np.asarray(res.per_class).mean(0),
                              reference=registry.entry(
                                  res.real_cas,
                                  ci=ci_lib.mean_interval(res.real_top1))),
        f"cas_top{res.top_k}": registry.entry(
            res.cas_topk, ci=ci_lib.mean_interval(res.topk),
            reference=registry.entry(res.real_topk)),
        "cas_real": registry.entry(res.real_cas,
                                   ci=ci_lib.mean_interval(res.real_top1),
                                   std=res.real_std),
        "cas_gap": registry.entry(res.gap, ci=ci_lib.mean_interval(
            np.asarray(res.real_top1) - np.asarray(res.top1)),
                                  std=res.gap_std),
    }
    for f, nas_row in zip(res.nas_fractions, np.asarray(res.nas_top1)):
      entries[f"nas_{100 * f:g}%"] = registry.entry(
          nas_row.mean(), ci=ci_lib.mean_interval(nas_row))
    out.metrics[name] = entries
    findings = []
    if zero:
      findings.append(
          "a classifier trained on its samples never recognises class"
          f"{'es' if len(zero) > 1 else ''} {', '.join(map(str, zero))} "
          "(0% in every seed)")
    gap_ci = entries["cas_gap"]["ci"]
    if float(res.gap) > cfg["gap_threshold"] and (gap_ci is None
                                                  or gap_ci[0] > 0):
      findings.append(f"its samples teach a classifier less than real data "
                      f"(CAS {float(res.cas):.3f} vs {float(res.real_cas):.3f})")
    if findings:
      out.findings[name] = findings
    if not bool(res.converged):
      out.notes.append(f"{name}: a CAS classifier's loss did not decrease or "
                       "became non-finite; treat its scores with care.")
    logging.info("cas %s: %.3f (real %.3f)", name, float(res.cas),
                 float(res.real_cas))
  out.sections.append("Per-class CAS test accuracy (%), mean over seeds "
                      "(bold: 0%):\n\n" + per_class_table(results))
  out.figures["cas_per_class.png"] = per_class_figure(results)
  values = [float(r.cas) for r in results.values()]
  errors = [float(r.cas_std) for r in results.values()]
  out.figures["cas.png"] = render.bar_chart(
      "CAS top-1 (mean +- std over seeds); dashed: real reference",
      list(results), values, errors, ylabel="test accuracy")
  out.figures["cas.png"].axes[0].axhline(
      float(next(iter(results.values())).real_cas), color="black",
      linestyle="--", linewidth=1.0)
  if kind == "images" and cfg["sample_grid"]:
    sets = {"real": (inputs.images["real"], labels)}
    sets.update({m: (inputs.images[m], inputs.generated_labels[m])
                 for m in models})
    out.figures["cas_samples.png"] = digits.named_grids(sets)
  return out


FAMILY = registry.Family(
    "cas", cas_family, needs=("real_labels", "generated_labels"),
    description=DESCRIPTION)
