"""Report family "precision_recall": k-NN P/R, density/coverage, PR curves.

Per model: improved precision and recall (k=3, `<=`), density and coverage
(k=5, `<`, with the coverage expected when P = Q for these sample sizes),
PRD's F_8 / F_1/8 (k-means histograms of the union; the larger set is
subsampled to the smaller one's size, as PRD requires equal sizes) and the
classifier-based curve's F_8 / F_1/8 (held-out logits of a probe ensemble),
plus one figure with both curves of every model.

With real labels, coverage is also broken down by class: the fraction of
each class's real samples whose k-NN ball holds a generated sample names
the modes a model drops.

Intervals (95%, `num_resamples` bootstrap replicates, vmapped):
  precision, recall, density, coverage  percentile intervals of the means of
      the per-sample quantities (membership flags, ball counts / k) under
      resampling of the generated rows (precision, density) and of the real
      rows (recall, coverage), with the k-NN radii held fixed: the interval
      measures which samples were drawn, not the radii's own noise (a
      resample with repeated rows would have zero-radius balls).
  prd_f8, prd_f1_8  each k-means run's cluster histograms resampled as
      multinomial counts (= resampling rows with the clusterings held
      fixed), curves averaged over runs as in `prd`; estimate -+ 1.96 std of
      the replicates (max F_beta is biased under resampling).
  clf_f8, clf_f1_8  the held-out real and generated scores of the fitted
      probe ensemble resampled (probes held fixed); estimate -+ 1.96 std.

References (`reference` of precision, recall, density, coverage, prd_f8,
prd_f1_8): the same estimates and intervals with held-out real rows in place
of the model's samples (`sampling.reference_sets`, the model's size), once per
distinct model size, through the model's compiled programs (same shapes).
The classifier F scores have none (a probe ensemble to train again).

The k-NN scores of a pair come from one fused pass (`improved_pr_and_prdc`:
k=3 `<=` and k=5 `<` on the same distance blocks), and the real set's
radii are computed once per run (`manifold_radii`) and shared by every
model and by the reference (when its real side is the real set).

Verdict rules (thresholds in the config section `precision_recall`):
  coverage < coverage_ratio x (coverage expected if P = Q)
      -> "misses part of the real distribution"
  class coverage < class_coverage_ratio x expected, for some classes
      -> "does not cover classes ..."
  density < low_density -> "many samples lie off the real data"
  density > high_density -> "samples crowd a few real regions"
  recall < low_recall_ratio x precision and density >= low_density
      -> "realistic but low diversity" (truncation-like collapse: the
         samples are on the real manifold but cover little of it)
"""

import math

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import manifold
from gendiag.metrics import prd as prd_lib
from gendiag.metrics import precision_recall as pr_lib
from gendiag.ops import intervals as ci_lib
from gendiag.report import bootstrap
from gendiag.report import registry
from gendiag.report import result_cache
from gendiag.report import sampling

DEFAULTS = dict(
    ipr_k=3,                    # improved P/R neighbourhood (the paper's)
    prdc_k=5,                   # density/coverage neighbourhood (the paper's)
    prd_clusters=20,            # PRD (Sajjadi et al.'s defaults)
    prd_runs=10,
    classifier_runs=5,          # probes in the ensemble (reference: 10)
    classifier_steps=500,
    classifier_hidden=(),       # () = logistic regression (the reference)
    classifier_learning_rate=1e-2,
    classifier_weight_decay=1e-4,
    coverage_ratio=0.9,         # finding: coverage < 0.9 x expected
    class_coverage_ratio=0.5,   # finding: a class's coverage < 0.5 x expected
    low_density=0.7,            # finding: density < 0.7
    high_density=1.5,           # finding: density > 1.5
    low_recall_ratio=0.5,       # finding: recall < 0.5 x precision
    num_resamples=200,          # bootstrap replicates of every interval
    level=0.95,                 # interval level
)

DESCRIPTION = (
    "k-NN precision/recall and PR curves. `precision` / `recall`: improved "
    "P/R (Kynkaanniemi et al. 2019, k=3): the fraction of generated samples "
    "inside the real k-NN manifold (fidelity) and of real samples inside the "
    "generated one (diversity); neither is 1 when P = Q in high dimension. "
    "`density` / `coverage` (Naeem et al. 2020, k=5): density ~1 when P = Q "
    "(below: samples off the real data; above: crowding), coverage near its "
    "expected value when P = Q (listed with it; below: real regions the model "
    "misses). `prd_f8` / `prd_f1_8`: PRD (Sajjadi et al. 2018) F_8 "
    "(recall-like) and F_1/8 (precision-like) from k-means histograms; "
    "`clf_f8` / `clf_f1_8`: the same from a real-vs-generated probe's "
    "held-out ROC (Simon et al. 2019); 1 = indistinguishable. Verdict rules "
    "(config `precision_recall`): coverage < 0.9 x expected, a class "
    "covered < 0.5 x expected, density < 0.7 or > 1.5, recall < 0.5 x "
    "precision (low diversity). Intervals: 95% bootstrap (see the notes).")

NOTE = (
    "Intervals: precision/recall/density/coverage: 95% bootstrap percentile "
    "intervals of the per-sample flags and counts (rows resampled, k-NN radii "
    "held fixed); PRD F: histograms of each k-means run resampled "
    "(clusterings held fixed); classifier F: held-out scores resampled "
    "(probes held fixed); both F intervals are estimate -+ 1.96 bootstrap "
    "std, clipped to [0, 1].")


def _columns(cfg):
  """The family's per-sample columns (ColumnInfo), by name."""
  col = lambda name, side, higher, text, threshold=None: registry.ColumnInfo(
      name, "precision_recall", side, higher, text, threshold)
  k_ipr, k_dc = cfg["ipr_k"], cfg["prdc_k"]
  return {
      "realism": col(
          "realism", "generated", False,
          f"realism score (Kynkaanniemi et al. 2019, k={k_ipr}): max over "
          "real balls of radius at most the median of NND_k(x_i) / "
          "|y - x_i|; below 1 = outside the pruned real manifold", 1.0),
      "off_real_manifold": col(
          "off_real_manifold", "generated", True,
          f"1 when the sample lies in no real k-NN ball (k={k_ipr}, <=): it "
          "does not count towards precision", 0.5),
      "real_balls": col(
          "real_balls", "generated", False,
          f"number of real k-NN balls (k={k_dc}, <) holding the sample: the "
          "density's numerator; 0 = off the real data"),
      "uncovered": col(
          "uncovered", "real", True,
          f"1 when the real row's k-NN ball (k={k_dc}, <) holds no generated "
          "sample: a real region the model misses (coverage)", 0.5),
      "outside_generated_manifold": col(
          "outside_generated_manifold", "real", True,
          f"1 when the real row lies in no generated k-NN ball (k={k_ipr}, "
          "<=): it does not count towards recall", 0.5),
  }


def _add_columns(out, name, cfg, ipr, dc):
  cols = _columns(cfg)
  out.add_column(name, cols["realism"], ipr.realism)
  out.add_column(name, cols["off_real_manifold"],
                 ~np.asarray(ipr.generated_in_real_manifold))
  out.add_column(name, cols["real_balls"], dc.generated_neighbor_counts)
  out.add_column(name, cols["uncovered"], ~np.asarray(dc.real_covered))
  out.add_column(name, cols["outside_generated_manifold"],
                 ~np.asarray(ipr.real_in_generated_manifold))


def expected_coverage(num_real: int, num_generated: int, k: int) -> float:
  """E[coverage] when P = Q: 1 - prod_{i<k} (N-1-i) / (N-1+M-i) (Naeem)."""
  prod = 1.0
  for i in range(k):
    prod *= (num_real - 1 - i) / (num_real - 1 + num_generated - i)
  return 1.0 - prod


def _balanced_pair(key, real, generated):
  """Subsamples the larger set (seeded) so both have the same size."""
  n = min(len(real), len(generated))
  key_r, key_g = jax.random.split(key)

  def take(k, x):
    if len(x) == n:
      return x
    return x[np.sort(np.asarray(jax.random.permutation(k, len(x))[:n]))]

  return take(key_r, real), take(key_g, generated)


def _curves_figure(curves):
  """PRD and classifier PR curves of every model, side by side."""
  fig = Figure(figsize=(10, 4.9))
  axes = fig.subplots(1, 2)
  titles = ("PRD (k-means histograms)", "Classifier-based (probe ROC)")
  for ax, kind, title in zip(axes, ("prd", "clf"), titles):
    for name, c in curves.items():
      ax.plot(np.asarray(c[kind].recall), np.asarray(c[kind].precision),
              label=name, linewidth=1.4)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall  beta(lambda)")
    ax.set_ylabel("precision  alpha(lambda)")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6),
             fontsize=8, frameon=False)
  fig.subplots_adjust(bottom=0.2)
  fig.suptitle("Precision-recall curves (real = P, model = Q; (1, 1) = "
               "indistinguishable)")
  return fig


def _class_coverage(real_covered, real_labels):
  classes = np.unique(real_labels)
  return {int(c): float(np.mean(real_covered[real_labels == c]))
          for c in classes}


def prd_clusters(cfg, num_rows: int) -> int:
  """PRD's cluster count: `prd_clusters`, lowered to the pair's row count
  (k-means needs a row per cluster; the family notes when it is lowered)."""
  return min(int(cfg["prd_clusters"]), int(num_rows))


def _knn_and_prd(real, generated, cfg, keys, real_radii=None):
  """Improved P/R, prdc, PRD and their bootstrap intervals for one pair.

  Args:
    real, generated: float32 feature arrays.
    cfg: the family's config.
    keys: (key_prd, key_sub, key_gen_b, key_real_b, key_prd_b).
    real_radii: `manifold_radii(real, k=(ipr_k, prdc_k))`, shared by every
      pair with this real set, or None to compute them.

  Returns:
    (ipr, dc, prd_res, {score: (value, ci)}) for precision, recall,
    density, coverage, prd_f8, prd_f1_8.
  """
  key_prd, key_sub, key_gen_b, key_real_b, key_prd_b = keys
  num_b, level = int(cfg["num_resamples"]), float(cfg["level"])
  ipr, dc = pr_lib.improved_pr_and_prdc(
      real, generated, ipr_k=cfg["ipr_k"], prdc_k=cfg["prdc_k"],
      real_radii=real_radii)
  sub_real, sub_gen = _balanced_pair(key_sub, real, generated)
  prd_res = prd_lib.prd(sub_real, sub_gen, key=key_prd,
                        num_clusters=prd_clusters(cfg, len(sub_real)),
                        num_runs=cfg["prd_runs"])
  gen_ci = ci_lib.percentile_intervals(ci_lib.bootstrap_means(
      key_gen_b, jnp.stack([ipr.generated_in_real_manifold,
                            dc.generated_neighbor_counts / cfg["prdc_k"]],
                           axis=1), num_resamples=num_b), level=level)
  real_ci = ci_lib.percentile_intervals(ci_lib.bootstrap_means(
      key_real_b, jnp.stack([ipr.real_in_generated_manifold,
                             dc.real_covered], axis=1),
      num_resamples=num_b), level=level)
  prd_ci = ci_lib.normal_intervals(
      [prd_res.f_beta, prd_res.f_inv_beta], bootstrap.prd_bootstrap(
          key_prd_b, prd_res.real_histograms, prd_res.generated_histograms,
          num_real=len(sub_real), num_generated=len(sub_gen),
          num_resamples=num_b, num_angles=int(prd_res.slopes.shape[0])),
      level=level)
  scores = {
      "precision": (ipr.precision, gen_ci[0]),
      "recall": (ipr.recall, real_ci[0]),
      "density": (dc.density, gen_ci[1]),
      "coverage": (dc.coverage, real_ci[1]),
      "prd_f8": (prd_res.f_beta, prd_ci[0]),
      "prd_f1_8": (prd_res.f_inv_beta, prd_ci[1]),
  }
  return ipr, dc, prd_res, scores


def _reference(inputs, key, cfg, size, real_radii):
  """(reference entries of the k-NN and PRD scores, note) at `size` rows.

  `real_radii` (the real set's) serve when the reference's real side is the
  real set itself.
  """
  sets = sampling.reference_sets(inputs, size)
  real = np.asarray(sets.real, np.float32)
  held = np.asarray(sets.heldout, np.float32)
  *_, scores = result_cache.cached_call(
      f"precision_recall reference (n = {size})", _knn_and_prd, real, held,
      cfg, jax.random.split(key, 5), real_radii if sets.same_real else None)
  entries = {name: registry.entry(value, ci=ci)
             for name, (value, ci) in scores.items()}
  return entries, f"reference (n = {size}): {sets.source}."


def precision_recall_family(inputs: EvalInputs,
                            key) -> registry.FamilyOutput:
  """Improved P/R, density/coverage, PRD and classifier PR curves per model."""
  cfg = registry.family_config(inputs, "precision_recall", **DEFAULTS)
  out = registry.FamilyOutput()
  real = np.asarray(inputs.real, np.float32)
  # The real set's k-NN radii, once for every model and the reference.
  real_radii = result_cache.cached_call(
      "precision_recall: the real set's k-NN radii", manifold.manifold_radii,
      real, k=(cfg["ipr_k"], cfg["prdc_k"]))
  curves, class_rows, refs = {}, [], {}
  unbalanced = False
  for i, (name, generated) in enumerate(inputs.generated.items()):
    generated = np.asarray(generated, np.float32)
    if len(generated) not in refs:
      refs[len(generated)] = _reference(
          inputs, jax.random.fold_in(key, 0x7EF + len(generated)), cfg,
          len(generated), real_radii)
      out.notes.append(refs[len(generated)][1])
    ref = refs[len(generated)][0]
    model_key = jax.random.fold_in(key, i)
    key_prd, key_clf, key_sub = jax.random.split(model_key, 3)
    # Bootstrap keys folded in, so the metrics' own keys are unchanged.
    key_gen_b, key_real_b, key_prd_b, key_clf_b = jax.random.split(
        jax.random.fold_in(model_key, 0x1B007), 4)
    ipr, dc, prd_res, scores = _knn_and_prd(
        real, generated, cfg,
        (key_prd, key_sub, key_gen_b, key_real_b, key_prd_b), real_radii)
    _add_columns(out, name, cfg, ipr, dc)
    expected = expected_coverage(len(real), len(generated), cfg["prdc_k"])
    unbalanced |= len(real) != len(generated)
    clf = prd_lib.classifier_pr_curve(
        real, generated, key=key_clf, num_runs=cfg["classifier_runs"],
        num_steps=cfg["classifier_steps"],
        hidden_sizes=tuple(cfg["classifier_hidden"]),
        learning_rate=cfg["classifier_learning_rate"],
        weight_decay=cfg["classifier_weight_decay"])
    curves[name] = {"prd": prd_res, "clf": clf}
    coverage = float(dc.coverage)
    density = float(dc.density)
    num_b, level = int(cfg["num_resamples"]), float(cfg["level"])
    clf_ci = ci_lib.normal_intervals(
        [clf.f_beta, clf.f_inv_beta], bootstrap.classifier_bootstrap(
            key_clf_b, clf.logits_real, clf.logits_generated,
            num_resamples=num_b, num_angles=int(clf.slopes.shape[0])),
        level=level)
    extra = {"precision": dict(k=cfg["ipr_k"]),
             "recall": dict(k=cfg["ipr_k"]),
             "density": dict(k=cfg["prdc_k"]),
             "coverage": dict(k=cfg["prdc_k"], expected_if_equal=expected)}
    out.metrics[name] = {
        **{score: registry.entry(value, ci=ci, reference=ref[score],
                                 **extra.get(score, {}))
           for score, (value, ci) in scores.items()},
        "clf_f8": registry.entry(clf.f_beta, ci=clf_ci[0]),
        "clf_f1_8": registry.entry(clf.f_inv_beta, ci=clf_ci[1],
                                   heldout_accuracy=clf.heldout_accuracy),
    }
    if not bool(np.all(np.asarray(prd_res.converged))):
      out.notes.append(f"{name}: k-means did not converge in some PRD runs "
                       "(max_iters reached); PRD values are approximate.")

    findings = []
    if coverage < cfg["coverage_ratio"] * expected:
      findings.append(f"misses part of the real distribution (coverage "
                      f"{coverage:.2f}, expected {expected:.2f} if equal)")
    if inputs.real_labels is not None:
      per_class = _class_coverage(np.asarray(dc.real_covered),
                                  np.asarray(inputs.real_labels))
      missed = [c for c, v in per_class.items()
                if v < cfg["class_coverage_ratio"] * expected]
      class_rows.append((name, per_class))
      if missed:
        findings.append("does not cover classes "
                        + ", ".join(str(c) for c in missed))
    if density < cfg["low_density"]:
      findings.append(f"many samples lie off the real data (density "
                      f"{density:.2f})")
    elif density > cfg["high_density"]:
      findings.append(f"samples crowd a few real regions (density "
                      f"{density:.2f}; copies or too little diversity)")
    if (density >= cfg["low_density"]
        and float(ipr.recall) < cfg["low_recall_ratio"] * float(
            ipr.precision)):
      findings.append(f"realistic but low diversity (recall "
                      f"{float(ipr.recall):.2f} at precision "
                      f"{float(ipr.precision):.2f})")
    if findings:
      out.findings[name] = findings

  out.notes.append(NOTE)
  smallest = min([len(real)] + [len(g) for g in inputs.generated.values()])
  if prd_clusters(cfg, smallest) < int(cfg["prd_clusters"]):
    out.notes.append(
        f"PRD: a set has only {smallest} rows, fewer than prd_clusters = "
        f"{cfg['prd_clusters']}: its PRD uses {smallest} clusters (one per "
        "row: a coarse histogram; PRD F8 / F1/8 of such small sets are "
        "rough).")
  if unbalanced:
    out.notes.append("PRD needs equal sizes: the larger of each real/model "
                     "pair was subsampled (seeded) to the smaller's size.")
  if class_rows:
    classes = sorted({c for _, row in class_rows for c in row})
    lines = ["Coverage by real class (fraction of the class's real samples "
             "whose k-NN ball holds a generated sample):", "",
             "| model | " + " | ".join(str(c) for c in classes) + " |",
             "|---|" + "---|" * len(classes)]
    for name, row in class_rows:
      cells = [f"{row.get(c, math.nan):.2f}" for c in classes]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out.sections.append("\n".join(lines))
  out.figures["precision_recall.png"] = _curves_figure(curves)
  return out


FAMILY = registry.Family(
    "precision_recall", precision_recall_family, description=DESCRIPTION)
