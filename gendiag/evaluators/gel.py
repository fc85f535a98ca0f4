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
"""

import numpy as np
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure

from gendiag import report
from gendiag.metrics import gel as gel_lib
from gendiag.metrics import gel_modes
from gendiag.ops import gel_dual

DEFAULTS = dict(
    objective="et",          # the paper's default
    kernel="gaussian",       # median-heuristic bandwidth: scale-free
    num_witnesses=128,       # J, capped at min(n, m) // 8 (feasibility)
    num_permutations=200,
    class_moments=8,
    max_samples=2000,        # rows of each set used (first ones)
    drop_threshold=0.1,
)

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
    "(within-class diversity; inf for a class the model lacks).")


def _status(code) -> str:
  return gel_dual.STATUS_NAMES[int(code)]


def _class_table(name, res, notes_source) -> str:
  """Markdown: one row per class of a model's GEL masses."""
  head = ("| class | real share | model share | GEL mass (1-sample) | "
          "2-sample real mass | 2-sample model mass | within-class ESS | "
          "class divergence | flag |")
  lines = [f"**{name}** (generated labels: {notes_source})", "", head,
           "|" + "---|" * 9]
  fields = [np.asarray(getattr(res, f)) for f in (
      "real_proportions", "generated_proportions", "real_masses",
      "two_sample_real_masses", "two_sample_generated_masses", "class_ess",
      "class_divergence")]
  for c in range(res.num_classes):
    r, g, m, q, p, ess, div = (f[c] for f in fields)
    flags = []
    if bool(res.dropped[c]):
      flags.append("dropped")
    if q < 0.5 * r:
      flags.append("missing")
    if g > 0 and p < 0.5 * g:
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


@report.register("gel", needs=("real_labels",), description=DESCRIPTION)
def gel_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  """GEL statistic, p-value and class masses per model."""
  cfg = report.family_config(inputs, "gel", **DEFAULTS)
  out = report.FamilyOutput()
  cap = cfg["max_samples"]
  real = jnp.asarray(inputs.real[:cap], jnp.float32)
  real_labels = np.asarray(inputs.real_labels[:cap])
  num_classes = int(max([real_labels.max()] + [
      np.max(v) for v in inputs.generated_labels.values()])) + 1
  weights, sources, infeasible = {}, {}, []
  for i, (name, features) in enumerate(inputs.generated.items()):
    gen = jnp.asarray(features[:cap], jnp.float32)
    labels = inputs.generated_labels.get(name)
    labels = None if labels is None else np.asarray(labels[:cap])
    num_witnesses = max(2, min(cfg["num_witnesses"],
                               min(len(real), len(gen)) // 8))
    model_key = jax.random.fold_in(key, i)
    witness_key, test_key = jax.random.split(model_key)
    pooled = jnp.concatenate([real, gen])
    witnesses = pooled[jax.random.choice(witness_key, len(pooled),
                                         (num_witnesses,), replace=False)]
    common = dict(objective=cfg["objective"], kernel=cfg["kernel"],
                  witnesses=witnesses)
    test = gel_lib.gel_test(real, gen, key=test_key,
                            num_permutations=cfg["num_permutations"], **common)
    modes = gel_modes.gel_mode_probabilities(
        real, gen, real_labels, generated_labels=labels,
        num_classes=num_classes, class_moments=cfg["class_moments"],
        drop_threshold=cfg["drop_threshold"], **common)
    dropped = [int(c) for c in np.flatnonzero(np.asarray(modes.dropped))]
    divs = np.asarray(modes.class_divergence)
    out.metrics[name] = {
        "gel_statistic": report.entry(
            test.statistic, status=_status(test.status),
            chi2_p_value=test.chi2_p_value, num_moments=test.num_moments,
            residual=test.residual),
        "gel_p_value": report.entry(test.p_value,
                                    null_unsolved=test.null_unsolved),
        "gel_mode_dropping": report.entry(
            modes.hellinger_to_real, status=_status(modes.one_sample_status),
            masses=modes.real_masses),
        "gel_mode_recovery": report.entry(modes.hellinger_to_generated),
        "gel_dropped_classes": report.entry(len(dropped), classes=dropped),
        "gel_max_class_divergence": report.entry(
            np.max(divs), per_class=[None if not np.isfinite(d) else float(d)
                                     for d in divs]),
    }
    if int(test.status) == gel_dual.INFEASIBLE or int(
        modes.one_sample_status) == gel_dual.INFEASIBLE:
      infeasible.append(name)
    weights[name] = modes.real_weights
    sources[name] = ("given" if modes.labels_source == "given"
                     else "k-NN vote among the real rows")
    out.sections.append(_class_table(name, modes, sources[name]))
  out.figures["gel_weights.png"] = _weights_figure(weights, real_labels)
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
        "infeasible (no reweighting matches the moments; statistic = inf, "
        f"class masses from the last iterate): {', '.join(infeasible)}.")
  return out
