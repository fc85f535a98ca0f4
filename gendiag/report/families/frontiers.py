"""Report family "frontiers": MAUVE, the frontier integral, their intervals.

Per model: MAUVE and FI of mauve-text's quantized pipeline (cluster
histograms of L2-normalised, PCA-reduced features) with bootstrap intervals,
next to the same pipeline on two random halves of the real set (the null
baseline: what "indistinguishable" scores at these settings and sizes), and
the classifier-ratio estimates (no quantization). One figure shows every
model's divergence frontier and MAUVE curve.

Intervals (`num_resamples` bootstrap resamples at fixed clusters): MAUVE's
and FI's from `divergence_frontier`; kl_model_to_real, kl_real_to_model,
missed_real_mass and off_real_mass from the cluster counts resampled as
multinomials (`side_intervals`, estimate -+ z std); mauve_null and fi_null,
means over `null_splits` splits, the t-interval of that mean (one split:
its bootstrap interval). The null entries are also the `reference` of
mauve and frontier_integral.

Verdict rule (thresholds in the config section `frontiers`):
  MAUVE's upper interval end < null_fraction x null MAUVE (the mean over
  `null_splits` random halvings of the real set)
      -> "far from the real distribution by MAUVE", with the side that
         dominates, from the two cluster histograms p (real) and q (model):
           missed_real_mass = sum_a p_a [q_a < p_a / mass_ratio]
             (real mass in clusters the model rarely visits: diversity),
           off_real_mass    = sum_a q_a [p_a < q_a / mass_ratio]
             (model mass where the real data is scarce: quality);
         one side is named when it exceeds min_mass and imbalance x the
         other, both when both exceed min_mass.
"""

import functools

import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import frontiers as fe
from gendiag.metrics.frontiers import scores as fe_scores
from gendiag.ops import intervals as ci_lib
from gendiag.report import registry
from gendiag.report import result_cache

DEFAULTS = dict(
    num_clusters=0,              # 0: use cluster_rule
    cluster_rule="n/10",         # mauve-text's; "cube_root" = 5 n^(1/3)
    explained_variance=0.9,      # PCA threshold (mauve-text)
    num_restarts=5,              # k-means redos (mauve-text)
    max_iters=500,               # Lloyd iterations (mauve-text)
    smoothing="empirical",       # MAUVE/FI histograms (MAUVE* is KT)
    scaling_factor=5.0,          # MAUVE's c (mauve-text)
    num_resamples=200,           # bootstrap replicates of the intervals
    level=0.95,
    classifier=True,             # also the classifier-ratio estimate
    classifier_steps=500,
    classifier_hidden=(),        # () = logistic regression
    null_splits=3,               # real halvings averaged for the null
    null_fraction=0.9,           # finding: MAUVE hi < 0.9 x null MAUVE
    mass_ratio=5.0,              # "rarely visits": density ratio below 1/5
    min_mass=0.05,               # a side needs this much mass
    imbalance=2.0,               # diversity/quality attribution ratio
)

DESCRIPTION = (
    "Divergence frontiers (Pillutla et al. 2021; Liu et al. 2021): "
    "KL(Q||R) (mass off the real data: quality) against KL(P||R) (missed "
    "real mass: diversity) over mixtures R = lam P + (1 - lam) Q. `mauve`: "
    "area under exp(-5 KL), in (0, 1], larger = closer; `frontier_integral`:"
    " in [0, 1], smaller = closer. Both from mauve-text's pipeline (L2 rows, "
    "PCA at 0.9 variance, k-means with k = n/10), which is biased towards "
    "'different' at finite n (real against real scores ~0.96, not 1) and "
    "towards 'similar' by quantization: compare each score with "
    "`mauve_null` / `fi_null` (two halves of the real set, same settings, "
    "averaged over random splits). "
    "Intervals: bootstrap over rows at fixed clusters (the null's: over "
    "its splits). `mauve_clf` / "
    "`fi_clf`: the same quantities from a real-vs-generated probe's "
    "cross-fitted density ratio (no quantization). Verdict rule (config "
    "`frontiers`): MAUVE's interval lies below 0.9 x the null MAUVE.")


def estimator_settings(cfg) -> dict:
  """The quantized-frontier keywords (`gendiag.mauve`'s) from the family config."""
  return dict(
      num_clusters=int(cfg["num_clusters"]) or None,
      cluster_rule=cfg["cluster_rule"],
      explained_variance=cfg["explained_variance"],
      num_restarts=int(cfg["num_restarts"]),
      max_iters=int(cfg["max_iters"]), smoothing=cfg["smoothing"],
      scaling_factor=float(cfg["scaling_factor"]))


def kl_ends(res):
  """The frontier's end points: (KL(Q || R_lam_max), KL(P || R_lam_min)).

  With lam_min = 1e-6 and lam_max = 1 - 1e-6 these are KL(Q || P) and
  KL(P || Q), capped near (mass with no counterpart) x log(1e6): the first
  grows with model mass where the real data has none, the second with real
  mass the model misses.
  """
  return float(res.kl_generated[-1]), float(res.kl_real[0])


def unmatched_mass(res, ratio):
  """(missed_real_mass, off_real_mass) of the cluster histograms.

    missed = sum_a p_a [q_a < p_a / ratio],  off = sum_a q_a [p_a < q_a / ratio]
  with p the real and q the model histogram (empirical counts).
  """
  p = np.asarray(res.real_counts, np.float64)
  q = np.asarray(res.generated_counts, np.float64)
  p, q = p / p.sum(), q / q.sum()
  return (float(np.sum(p * (q * ratio < p))),
          float(np.sum(q * (p * ratio < q))))


@functools.partial(jax.jit, static_argnames=("smoothing", "num_weights"))
def _end_replicates(counts_real, counts_gen, scaling_factor, *, smoothing,
                    num_weights):
  """(B,) frontier end points of (B, k) count replicates (`kl_ends`)."""
  def one(cr, cg):
    _, _, front = fe_scores.scores(  # pylint: disable=protected-access
        cr, cg, scaling_factor, smoothing=smoothing, num_weights=num_weights)
    return front.kl_generated[-1], front.kl_real[0]
  return jax.vmap(one)(counts_real, counts_gen)


def side_intervals(key, res, cfg, settings):
  """Intervals of kl_model_to_real, kl_real_to_model and the unmatched masses.

  Rows are resampled with the clusters held fixed, as for MAUVE's interval:
  the cluster counts become Multinomial(n, p) and Multinomial(m, q); each
  replicate recomputes the frontier's end points (with the same smoothing)
  and the unmatched masses. The interval is estimate -+ z std of the
  replicates (plug-in divergences are biased under resampling), clipped to
  [0, inf) and [0, 1].

  Returns:
    (4, 2) bounds in the order of `kl_ends` then `unmatched_mass`.
  """
  num_b = int(cfg["num_resamples"])
  rng = np.random.default_rng(
      np.asarray(jax.random.key_data(key)).ravel().tolist())
  reps = []
  for counts in (res.real_counts, res.generated_counts):
    c = np.asarray(counts, np.float64)
    reps.append(rng.multinomial(int(c.sum()), c / c.sum(), size=num_b))
  kl_gen, kl_real = _end_replicates(
      np.float32(reps[0]), np.float32(reps[1]),
      np.float32(settings["scaling_factor"]), smoothing=settings["smoothing"],
      num_weights=int(np.shape(res.weights)[0]))
  ratio = float(cfg["mass_ratio"])
  p = reps[0] / reps[0].sum(axis=1, keepdims=True)
  q = reps[1] / reps[1].sum(axis=1, keepdims=True)
  missed = np.sum(p * (q * ratio < p), axis=1)
  off = np.sum(q * (p * ratio < q), axis=1)
  level = float(cfg["level"])
  estimates = kl_ends(res) + unmatched_mass(res, ratio)
  kl = ci_lib.normal_intervals(estimates[:2], np.stack(
      [np.asarray(kl_gen), np.asarray(kl_real)], 1), level=level,
                               bounds=(0.0, np.inf))
  mass = ci_lib.normal_intervals(estimates[2:], np.stack([missed, off], 1),
                                 level=level)
  return np.concatenate([kl, mass])


def _side(missed, off, cfg) -> str:
  """Which failure the unmatched masses point to (module docstring)."""
  lo = cfg["min_mass"]
  if missed > lo and missed > cfg["imbalance"] * off:
    return (f"; {missed:.0%} of the real mass lies in clusters the model "
            "rarely visits (low diversity)")
  if off > lo and off > cfg["imbalance"] * missed:
    return (f"; {off:.0%} of the model's mass lies where real data is "
            "scarce (low quality)")
  if missed > lo and off > lo:
    return (f"; both missed real mass ({missed:.0%}) and model mass off the "
            f"real data ({off:.0%})")
  return ""


def _frontier_figure(results, null, scaling_factor) -> Figure:
  """Every model's KL frontier (left) and MAUVE curve (right)."""
  fig = Figure(figsize=(10, 4.9))
  ax_kl, ax_mv = fig.subplots(1, 2)
  curves = dict(results)
  curves["real vs real (null)"] = null
  tops = []
  for name, res in curves.items():
    x, y = np.asarray(res.kl_generated), np.asarray(res.kl_real)
    style = dict(color="0.5", linestyle="--") if res is null else {}
    ax_kl.plot(x, y, marker=".", markersize=3, linewidth=1.4, label=name,
               **style)
    ex = np.concatenate([[1.0], np.exp(-scaling_factor * x), [0.0]])
    ey = np.concatenate([[0.0], np.exp(-scaling_factor * y), [1.0]])
    ax_mv.plot(ex, ey, linewidth=1.4,
               label=f"{name} ({float(res.mauve):.3f})", **style)
    i = len(res.weights) // 2
    tops.append(max(float(x[i]), float(y[i])))
  # Scaled to the typical curve: an outlier (e.g. disjoint supports) leaves
  # the axes here but stays visible in the MAUVE panel.
  limit = min(3.0, max(0.05, 4.0 * float(np.median(tops))))
  ax_kl.set_xlim(0, limit)
  ax_kl.set_ylim(0, limit)
  ax_kl.set_xlabel("KL(Q || R)  (mass off the real data: quality)")
  ax_kl.set_ylabel("KL(P || R)  (missed real mass: diversity)")
  ax_kl.set_title("Divergence frontiers (origin = identical)")
  ax_mv.set_xlim(0, 1.02)
  ax_mv.set_ylim(0, 1.02)
  ax_mv.set_xlabel(f"exp(-{scaling_factor:g} KL(Q || R))")
  ax_mv.set_ylabel(f"exp(-{scaling_factor:g} KL(P || R))")
  ax_mv.set_title("MAUVE curves (area = MAUVE)")
  ax_mv.legend(fontsize=7, loc="lower left", frameon=False)
  for ax in (ax_kl, ax_mv):
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
  fig.suptitle("P = real, Q = model, R = lam P + (1 - lam) Q over lam in "
               "(0, 1); cluster histograms")
  fig.tight_layout()
  return fig


def frontiers_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  """MAUVE and FI with intervals, the real-vs-real baseline, one figure."""
  cfg = registry.family_config(inputs, "frontiers", **DEFAULTS)
  out = registry.FamilyOutput()
  settings = estimator_settings(cfg)
  real = np.asarray(inputs.real, np.float32)
  key_null, key_models = jax.random.split(key)
  splits = max(1, int(cfg["null_splits"]))
  # One split: its own bootstrap interval; more: the t-interval of the mean.
  nulls = [result_cache.cached_call(
      f"frontiers null baseline (split {s})", fe.null_baseline,
      real, key=jax.random.fold_in(key_null, s), **settings,
      num_resamples=0 if splits > 1 else int(cfg["num_resamples"]),
      level=float(cfg["level"])) for s in range(splits)]
  null = nulls[0]
  null_mauves = np.array([float(r.mauve) for r in nulls])
  null_fis = np.array([float(r.frontier_integral) for r in nulls])
  null_mauve, null_fi = float(null_mauves.mean()), float(null_fis.mean())
  ddof = 1 if len(nulls) > 1 else 0
  level = float(cfg["level"])
  if splits > 1:
    clip = lambda ci: None if ci is None else tuple(np.clip(ci, 0.0, 1.0))
    null_mauve_ci = clip(ci_lib.mean_interval(null_mauves, level=level))
    null_fi_ci = clip(ci_lib.mean_interval(null_fis, level=level))
  else:
    null_mauve_ci = ci_lib.as_ci(np.asarray(null.mauve_ci))
    null_fi_ci = ci_lib.as_ci(np.asarray(null.frontier_integral_ci))
  null_entries = {
      "mauve_null": registry.entry(null_mauve, null_mauve_ci,
                                   std=null_mauves.std(ddof=ddof),
                                   splits=null_mauves),
      "fi_null": registry.entry(null_fi, null_fi_ci,
                                std=null_fis.std(ddof=ddof), splits=null_fis)}
  results, unconverged = {}, []
  for i, (name, generated) in enumerate(inputs.generated.items()):
    generated = np.asarray(generated, np.float32)
    key_q, key_c = jax.random.split(jax.random.fold_in(key_models, i))
    res = fe.divergence_frontier(
        real, generated, key=key_q, num_resamples=int(cfg["num_resamples"]),
        level=float(cfg["level"]), **settings)
    results[name] = res
    if not bool(res.converged):
      unconverged.append(name)
    kl_gen, kl_real = kl_ends(res)
    missed, off = unmatched_mass(res, float(cfg["mass_ratio"]))
    side_ci = side_intervals(jax.random.fold_in(key_q, 0x1B007), res, cfg,
                             settings)
    row = {
        "mauve": registry.entry(res.mauve, res.mauve_ci, std=res.mauve_std,
                                mauve_star=res.mauve_star,
                                num_clusters=res.num_clusters,
                                reference=null_entries["mauve_null"]),
        "mauve_null": null_entries["mauve_null"],
        "frontier_integral": registry.entry(
            res.frontier_integral, res.frontier_integral_ci,
            std=res.frontier_integral_std,
            frontier_integral_star=res.frontier_integral_star,
            reference=null_entries["fi_null"]),
        "fi_null": null_entries["fi_null"],
        "kl_model_to_real": registry.entry(kl_gen, ci_lib.as_ci(side_ci[0])),
        "kl_real_to_model": registry.entry(kl_real, ci_lib.as_ci(side_ci[1])),
        "missed_real_mass": registry.entry(missed, ci_lib.as_ci(side_ci[2])),
        "off_real_mass": registry.entry(off, ci_lib.as_ci(side_ci[3])),
    }
    if cfg["classifier"]:
      clf = fe.classifier_frontier(
          real, generated, key=key_c, num_steps=int(cfg["classifier_steps"]),
          hidden_sizes=tuple(cfg["classifier_hidden"]),
          scaling_factor=settings["scaling_factor"],
          num_resamples=int(cfg["num_resamples"]), level=float(cfg["level"]))
      row["mauve_clf"] = registry.entry(
          clf.mauve, clf.mauve_ci, heldout_accuracy=clf.heldout_accuracy,
          ratio_mean_generated=clf.ratio_mean_generated)
      row["fi_clf"] = registry.entry(clf.frontier_integral,
                                     clf.frontier_integral_ci)
    out.metrics[name] = row

    upper = float(res.mauve_ci[1]) if res.mauve_ci is not None else float(
        res.mauve)
    if upper < cfg["null_fraction"] * null_mauve:
      out.findings[name] = [
          f"far from the real distribution by MAUVE ({float(res.mauve):.2f},"
          f" real against real {null_mauve:.2f}){_side(missed, off, cfg)}"]

  k = results[next(iter(results))].num_clusters if results else 0
  out.notes.append(
      f"quantization: {k} k-means clusters (rule {cfg['cluster_rule']!r}"
      f"{'' if not cfg['num_clusters'] else ', fixed'}), PCA at "
      f"{cfg['explained_variance']} explained variance, "
      f"{cfg['num_restarts']} restarts; null baseline: mean of "
      f"{len(nulls)} random splits of the real set, {real.shape[0] // 2} vs "
      f"{real.shape[0] - real.shape[0] // 2} rows, {null.num_clusters} "
      "clusters (shown as the reference of mauve and frontier_integral); "
      f"intervals: {cfg['num_resamples']} bootstrap resamples at fixed "
      f"clusters, level {cfg['level']} (the KL end points and unmatched "
      "masses: estimate -+ z std of the resampled cluster counts); the "
      "null's: the t-interval of the mean over the splits (one split: its "
      "bootstrap interval).")
  out.notes.append(
      "`kl_model_to_real` / `kl_real_to_model`: the frontier's end points "
      "KL(Q||P) and KL(P||Q) of the histograms, each capped near (mass with "
      "no counterpart) x log(1e6): large `kl_real_to_model` = real mass the "
      "model misses (diversity), large `kl_model_to_real` = model mass where "
      "the real data has none (quality). "
      "`missed_real_mass` / `off_real_mass`: real mass in clusters where the "
      f"model's share is below 1/{cfg['mass_ratio']:g} of the real one "
      "(diversity), and the reverse (quality); the verdict's attribution. "
      f"Verdict rule: MAUVE's upper interval end < {cfg['null_fraction']:g}"
      " x the null MAUVE.")
  if unconverged:
    out.notes.append("k-means reached max_iters without converging for: "
                     f"{', '.join(unconverged)}; values are approximate.")
  if results:
    out.figures["frontiers.png"] = _frontier_figure(
        results, null, settings["scaling_factor"])
  return out


FAMILY = registry.Family(
    "frontiers", frontiers_family, description=DESCRIPTION)
