"""Report family "gel": GEL test, class masses and per-sample weights.

Per model: the two-sample GEL statistic and its permutation p-value
(`gel_test`), and from `gel_mode_probabilities` the Hellinger distance of
the one-sample class masses of the real rows to the real class mix (mode
dropping / imbalance), to the generated class mix (how well the masses
recover it), the classes GEL finds dropped, and the largest per-class
divergence (intra-class diversity). A markdown table per model lists every
class; one figure shows the real rows' weights n * w_i grouped by class.

Generated labels come from the inputs when a model has them, otherwise from
a k-NN vote among the labelled real rows (noted in the report).

Verdict rules (thresholds in the config section `gel`), from the one-sample
class masses m_c of the real rows against the real class mix r_c (they need
no labels on the generated side):
  m_c < drop_threshold x r_c for some classes
      -> "gives classes ... almost no mass (dropped)"
  m_c < under_ratio x r_c for classes not dropped, and the Hellinger
  distance H(m, r) > imbalance_hellinger
      -> "under-represents classes ... (class imbalance)"
  only when the one-sample solve SOLVED. An infeasible one (the model's
  moment mean is outside the convex hull of the real rows')
      -> "no reweighting of the real rows matches this model's moments:
         its samples lie off the real data", and a non-converged one its
         own finding; neither gives class findings, and the mode-dropping
         entries carry no value (the masses are the last iterate's, shown
         in the class table as such).

Intervals (`num_resamples` bootstrap refits; 95% by default):
  gel_mode_dropping, gel_mode_recovery, gel_max_class_divergence
      the whole class-mass procedure (one-sample, two-sample and per-class
      GEL problems) is solved again on B resamples of the real and the
      generated rows (labels resampled with their rows, witnesses held
      fixed), each through the estimate's compiled program; the
      interval is estimate -+ z std of the replicates (Hellinger distances
      and divergences are biased upwards by the repeated rows of a
      resample, so the percentile interval could miss the estimate),
      clipped to [0, 1] / [0, inf). Replicates whose problem is infeasible
      (divergence inf) are left out of the spread; a class divergence of
      inf (a class the model lacks) has none.
  gel_dropped_classes
      the percentile range of the replicates' counts, widened to contain
      the estimate.
  gel_statistic, gel_p_value: no interval, on purpose. The statistic is a
      test statistic calibrated by its permutation test: the p-value is its
      statement of uncertainty, and a p-value is not an estimate with an
      interval.
"""

import numpy as np
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import gel as gel_lib
from gendiag.metrics.gel import modes as gel_modes
from gendiag.metrics.gel import dual as gel_dual
from gendiag.ops import intervals as ci_lib
from gendiag.report import bootstrap
from gendiag.report import registry
from gendiag.report import result_cache
from gendiag.report import sampling

DEFAULTS = dict(
    objective="et",          # the paper's default
    kernel="gaussian",       # median-heuristic bandwidth: scale-free
    num_witnesses=128,       # J, capped at min(n, m) // 8 (feasibility)
    num_permutations=200,
    class_moments=8,
    max_samples=2000,        # rows of each set used (seeded random ones)
    drop_threshold=0.1,
    under_ratio=0.5,         # finding: class mass < 0.5 x its real share
    imbalance_hellinger=0.1,  # ... and H(masses, real mix) > 0.1
    num_resamples=20,        # bootstrap refits of the class masses
    level=0.95,              # interval level
)

NOTE = (
    "Intervals: 95% bootstrap of the class-mass procedure refitted on "
    "resampled real and generated rows (witnesses fixed; estimate -+ 1.96 "
    "std of the refits; dropped classes: the refits' percentile range). "
    "gel_statistic and gel_p_value carry none: the permutation test "
    "calibrates the statistic, and its p-value is the uncertainty statement.")

DESCRIPTION = (
    "Generalized empirical likelihood (Ravuri et al. 2023): how must the "
    "real and generated samples be reweighted to agree in kernel moments at "
    "J witness points? `gel_statistic` = 2(m D(p) + n D(q)) of exponential "
    "tilting (large: the sets differ; inf: no reweighting can match them) "
    "and `gel_p_value` its permutation p-value. `gel_mode_dropping`: "
    "Hellinger distance between the GEL class masses of the real rows and "
    "the real class mix (0: every class covered in proportion; grows with "
    "dropped or under-weighted classes). `gel_mode_recovery`: the same "
    "against the model's own class mix (small: the masses are trustworthy). "
    "`gel_dropped_classes`: classes with mass < 0.1 x their real share. "
    "`gel_max_class_divergence`: the largest per-class two-sample divergence "
    "(within-class diversity; inf for a class the model lacks). Intervals: "
    "bootstrap refits (see the notes); none for the test statistic and its "
    "p-value. Verdict rules (config `gel`): a class with mass < 0.1 x its "
    "real share is dropped; classes below 0.5 x with H > 0.1 are "
    "under-represented.")


OFF_DATA_FINDING = ("no reweighting of the real rows matches this model's "
                    "moments: its samples lie off the real data (GEL)")
NOT_CONVERGED_FINDING = ("the GEL class-mass solve did not converge: no class "
                         "findings for this model")


def _failed_solve(modes):
  """The finding of a failed one-sample solve, or None if it SOLVED.

  The class masses of a failed solve are those of its last iterate, not a
  solution: they give no class findings and no dropped-class count.
  """
  status = int(modes.one_sample_status)
  if status == gel_dual.SOLVED:
    return None
  return OFF_DATA_FINDING if status == gel_dual.INFEASIBLE else (
      NOT_CONVERGED_FINDING)


def _findings(modes, dropped, cfg):
  """Dropped and under-represented classes from the one-sample masses, or
  the failed solve's own finding (and no class findings) if it failed."""
  failed = _failed_solve(modes)
  if failed:
    return [failed]
  findings = []
  names = lambda cs: ", ".join(str(c) for c in cs)
  if dropped:
    findings.append(
        f"gives class{'es' if len(dropped) > 1 else ''} {names(dropped)} "
        f"almost no GEL mass (< {cfg['drop_threshold']:g} x the real share: "
        "dropped)")
  masses = np.asarray(modes.real_masses, np.float64)
  shares = np.asarray(modes.real_proportions, np.float64)
  under = [int(c) for c in np.flatnonzero(
      (masses < cfg["under_ratio"] * shares) & (shares > 0))
           if int(c) not in dropped]
  hellinger = float(modes.hellinger_to_real)
  if under and hellinger > cfg["imbalance_hellinger"]:
    findings.append(
        f"under-represents class{'es' if len(under) > 1 else ''} "
        f"{names(under)} (GEL mass < {cfg['under_ratio']:g} x the real share, "
        f"Hellinger {hellinger:.2f}: class imbalance)")
  return findings


def _status(code) -> str:
  return gel_dual.STATUS_NAMES[int(code)]


def _class_table(name, res, notes_source) -> str:
  """Markdown: one row per class of a model's GEL masses.

  Masses of a failed solve are shown but labelled as such (the last
  iterate's), and flag nothing.
  """
  head = ("| class | real share | model share | GEL mass (1-sample) | "
          "2-sample real mass | 2-sample model mass | within-class ESS | "
          "class divergence | flag |")
  lines = [f"**{name}** (generated labels: {notes_source})", ""]
  one_ok = int(res.one_sample_status) == gel_dual.SOLVED
  two_ok = int(res.two_sample_status) == gel_dual.SOLVED
  for ok, status, which in (
      (one_ok, res.one_sample_status, "one-sample masses (GEL mass, "
       "within-class ESS)"),
      (two_ok, res.two_sample_status, "two-sample masses")):
    if not ok:
      lines += [f"The {which} come from a failed solve ({_status(status)}): "
                "its last iterate, not a solution; they flag nothing.", ""]
  lines += [head, "|" + "---|" * 9]
  fields = [np.asarray(getattr(res, f)) for f in (
      "real_proportions", "generated_proportions", "real_masses",
      "two_sample_real_masses", "two_sample_generated_masses", "class_ess",
      "class_divergence")]
  for c in range(res.num_classes):
    r, g, m, q, p, ess, div = (f[c] for f in fields)
    flags = []
    if one_ok and bool(res.dropped[c]):
      flags.append("dropped")
    if two_ok and q < 0.5 * r:
      flags.append("missing")
    if two_ok and g > 0 and p < 0.5 * g:
      flags.append("extraneous")
    div_text = "inf" if not np.isfinite(div) else f"{div:.3g}"
    lines.append(f"| {c} | {r:.3f} | {g:.3f} | {m:.3f} | {q:.3f} | {p:.3f} "
                 f"| {ess:.2f} | {div_text} | {', '.join(flags)} |")
  return "\n".join(lines)


def _weights_figure(weights, labels) -> Figure:
  """n * w_i of the real rows by class, one panel per model (log scale)."""
  names = list(weights)
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
  axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
  classes = np.unique(labels)
  for ax, name in zip(axes, names):
    w = np.asarray(weights[name], np.float64) * len(labels)
    data = [np.clip(w[labels == c], 1e-4, None) for c in classes]
    ax.boxplot(data, positions=np.arange(len(classes)), widths=0.6,
               showfliers=False)
    for i, d in enumerate(data):
      jitter = np.random.default_rng(i).uniform(-0.2, 0.2, len(d))
      ax.scatter(i + jitter, d, s=2, alpha=0.25, color="#4c72b0")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("real class")
    ax.set_ylabel("n x GEL weight")
    ax.set_title(name)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  fig.suptitle("GEL weights of the real rows (1 = uniform; near 0: the model "
               "cannot account for them)")
  fig.tight_layout()
  return fig


def _reference(inputs, key, cfg, size, num_classes):
  """gel_mode_dropping and gel_dropped_classes of held-out real rows.

  The one-sample class masses that held-out real data (`sampling.
  reference_sets`, `size` rows, capped like a model's set) gets against
  the capped real rows, with witnesses drawn as for a model: what a model
  as good as real data scores at this size. Held-out rows without labels
  get the k-NN vote (the one-sample masses do not use them). One solve, no
  bootstrap (no interval: the refits would cost as much again per size).
  """
  cap = int(cfg["max_samples"])
  sets = sampling.reference_sets(inputs, size)
  real, real_labels = sampling.subsample_rows(
      inputs, "real" if sets.same_real else "reference real", cap, sets.real,
      sets.real_labels)
  held, held_labels = sampling.subsample_rows(
      inputs, "reference", cap, sets.heldout, sets.heldout_labels)
  ref_key = jax.random.fold_in(key, 0x7EF + size)
  num_witnesses = max(2, min(cfg["num_witnesses"], min(len(real),
                                                       len(held)) // 8))
  pooled = np.concatenate([np.asarray(real), np.asarray(held)])
  witnesses = jnp.asarray(pooled[np.asarray(jax.random.choice(
      ref_key, len(pooled), (num_witnesses,), replace=False))])
  modes = result_cache.cached_call(
      f"gel reference (n = {size})", gel_modes.gel_mode_probabilities,
      jnp.asarray(real, jnp.float32), jnp.asarray(held, jnp.float32),
      real_labels=np.asarray(real_labels), generated_labels=held_labels,
      num_classes=num_classes, class_moments=cfg["class_moments"],
      drop_threshold=cfg["drop_threshold"], objective=cfg["objective"],
      kernel=cfg["kernel"], witnesses=witnesses)
  # A failed solve gives no reference (null), with its status.
  solved = int(modes.one_sample_status) == gel_dual.SOLVED
  dropped = int(np.asarray(modes.dropped).sum()) if solved else np.nan
  return {
      "gel_mode_dropping": registry.entry(
          modes.hellinger_to_real if solved else np.nan,
          status=_status(modes.one_sample_status), masses=modes.real_masses),
      "gel_dropped_classes": registry.entry(dropped),
      "note": (f"reference (n = {size}): {sets.source}, capped at {cap} "
               "rows; one-sample class masses of the held-out rows, one "
               "solve (no interval)."),
  }


REAL_WEIGHT = registry.ColumnInfo(
    "gel_real_weight", "gel", "real", False, "n x the real row's one-sample "
    "GEL weight (1 = uniform; ~0: the model cannot account for it)")
GENERATED_WEIGHT = registry.ColumnInfo(
    "gel_generated_weight", "gel", "generated", False, "m x the sample's "
    "two-sample GEL weight (the test's fit; < 1: over-represented)")


def _add_columns(out, inputs, name, cap, modes, test):
  """GEL's weights of the (capped) rows it used, from SOLVED fits only."""
  for info, fit, w, set_name, n in (
      (REAL_WEIGHT, modes.one_sample_status, modes.real_weights, "real",
       len(inputs.real)),
      (GENERATED_WEIGHT, test.status, test.generated_weights, name,
       len(inputs.generated[name]))):
    if int(fit) == gel_dual.SOLVED:
      w = np.asarray(w, np.float64)
      out.add_column(name, info, len(w) * w,
                     sampling.subsample_index(inputs, set_name, n, cap))


def gel_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  """GEL statistic, p-value and class masses per model."""
  cfg = registry.family_config(inputs, "gel", **DEFAULTS)
  out = registry.FamilyOutput()
  cap = int(cfg["max_samples"])
  real, real_labels = sampling.subsample_rows(inputs, "real", cap, inputs.real,
                                              inputs.real_labels)
  real, real_labels = jnp.asarray(real, jnp.float32), np.asarray(real_labels)
  if sampling.subsample_note(inputs, cap, "the kid interval, mmd and gel"):
    out.notes.append(sampling.subsample_note(inputs, cap,
                                             "the kid interval, mmd and gel"))
  num_classes = int(max([real_labels.max()] + [
      np.max(v) for v in inputs.generated_labels.values()])) + 1
  weights, sources, infeasible, refs = {}, {}, [], {}
  for i, (name, features) in enumerate(inputs.generated.items()):
    gen, labels = sampling.subsample_rows(
        inputs, name, cap, features, inputs.generated_labels.get(name))
    gen = jnp.asarray(gen, jnp.float32)
    labels = None if labels is None else np.asarray(labels)
    if len(gen) not in refs:
      refs[len(gen)] = _reference(inputs, key, cfg, len(gen), num_classes)
      out.notes.append(refs[len(gen)]["note"])
    num_witnesses = max(2, min(cfg["num_witnesses"],
                               min(len(real), len(gen)) // 8))
    model_key = jax.random.fold_in(key, i)
    witness_key, test_key = jax.random.split(model_key)
    pooled = np.concatenate([np.asarray(real), np.asarray(gen)])
    witnesses = jnp.asarray(pooled[np.asarray(jax.random.choice(
        witness_key, len(pooled), (num_witnesses,), replace=False))])
    common = dict(objective=cfg["objective"], kernel=cfg["kernel"],
                  witnesses=witnesses)
    test = gel_lib.gel_test(real, gen, key=test_key,
                            num_permutations=cfg["num_permutations"], **common)
    modes = gel_modes.gel_mode_probabilities(
        real, gen, real_labels=real_labels, generated_labels=labels,
        num_classes=num_classes, class_moments=cfg["class_moments"],
        drop_threshold=cfg["drop_threshold"], **common)
    dropped = [int(c) for c in np.flatnonzero(np.asarray(modes.dropped))]
    _add_columns(out, inputs, name, cap, modes, test)
    divs = np.asarray(modes.class_divergence)
    level = float(cfg["level"])
    reps = np.asarray(bootstrap.mode_bootstrap(
        jax.random.fold_in(model_key, 0x1B007), real, gen,
        jnp.asarray(real_labels), modes.generated_labels, witnesses,
        cfg["drop_threshold"], num_resamples=int(cfg["num_resamples"]),
        objective=cfg["objective"], kernel=cfg["kernel"],
        num_classes=num_classes, class_moments=cfg["class_moments"]))
    h_ci = ci_lib.normal_intervals(
        [modes.hellinger_to_real, modes.hellinger_to_generated], reps[:, :2],
        level=level)
    div_ci = ci_lib.normal_intervals([np.max(divs)], reps[:, 3:],
                                     level=level, bounds=(0.0, np.inf))
    out.metrics[name] = {
        "gel_statistic": registry.entry(
            test.statistic, status=_status(test.status),
            chi2_p_value=test.chi2_p_value, num_moments=test.num_moments,
            residual=test.residual),
        "gel_p_value": registry.entry(test.p_value,
                                      null_unsolved=test.null_unsolved),
        "gel_mode_dropping": registry.entry(
            modes.hellinger_to_real, ci=ci_lib.as_ci(h_ci[0]),
            status=_status(modes.one_sample_status),
            masses=modes.real_masses, rows_used=[len(real), len(gen)],
            reference=refs[len(gen)]["gel_mode_dropping"]),
        "gel_mode_recovery": registry.entry(modes.hellinger_to_generated,
                                            ci=ci_lib.as_ci(h_ci[1])),
        "gel_dropped_classes": registry.entry(
            len(dropped), ci=ci_lib.count_interval(len(dropped), reps[:, 2],
                                                   level=level),
            classes=dropped,
            reference=refs[len(gen)]["gel_dropped_classes"]),
        "gel_max_class_divergence": registry.entry(
            np.max(divs), ci=ci_lib.as_ci(div_ci[0]),
            per_class=[None if not np.isfinite(d) else float(d)
                       for d in divs]),
    }
    if _failed_solve(modes):  # last-iterate masses: not measurements
      for metric in ("gel_mode_dropping", "gel_mode_recovery",
                     "gel_dropped_classes"):
        out.metrics[name][metric].update(value=None, ci=None,
                                         status=_status(
                                             modes.one_sample_status))
      out.metrics[name]["gel_dropped_classes"]["classes"] = None
    findings = _findings(modes, dropped, cfg)
    if findings:
      out.findings[name] = findings
    if int(test.status) == gel_dual.INFEASIBLE or int(
        modes.one_sample_status) != gel_dual.SOLVED:
      infeasible.append(name)
    weights[name] = modes.real_weights
    sources[name] = ("given" if modes.labels_source == "given"
                     else "k-NN vote among the real rows")
    out.sections.append(_class_table(name, modes, sources[name]))
  out.figures["gel_weights.png"] = _weights_figure(weights, real_labels)
  out.notes.append(NOTE)
  out.notes.append(
      f"objective {cfg['objective']}, {cfg['kernel']} kernel moments at "
      f"witness rows drawn from each pooled sample (J <= "
      f"{cfg['num_witnesses']}), {cfg['num_permutations']} permutations.")
  knn = [n for n, s in sources.items() if s != "given"]
  if knn:
    note = ", ".join(knn)
    out.notes.append(f"generated labels from a k-NN vote for: {note}.")
  if infeasible:
    out.notes.append(
        "GEL solve infeasible (no reweighting matches the moments) or not "
        "converged for: " + ", ".join(infeasible) + ". The test's "
        "statistic stays finite (multiplier-capped, see gel_test) and its "
        "p-value counts infeasibility against the model; class masses of a "
        "failed one-sample solve are its last iterate: no class findings, "
        "no mode-dropping values.")
  return out


FAMILY = registry.Family(
    "gel", gel_family, needs=("real_labels",), description=DESCRIPTION)
