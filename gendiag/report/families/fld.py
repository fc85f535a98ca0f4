"""Report family "fld": FLD, its generalisation gap and memorised copies.

Per model: FLD (test likelihood under a mixture on the generated samples
fitted to `train`, against a fresh-real-sample baseline), the gap (train vs
test likelihood; strongly negative = memorisation), the number of generated
samples flagged as copies of a training sample (nearest / second-nearest
training distance < 1/3), AuthPct and C_T. One baseline C is fitted per
generated-set size and shared by the models of that size; C_T's PCA of the
training set and AuthPct's training nearest-neighbour distances are computed
once, and each model's nearest-training-rows search serves both the copy
flags and AuthPct.

`inputs.test` is the held-out real set when given. Without it, FLD needs
real data the generator never saw besides `train`: the even rows of
`inputs.real` are used as the test set (a deterministic half; the note says
so), which assumes `real` is disjoint from `train`.

Intervals (95% by default):
  fld, fld_gap  FLD is a fit, so the whole procedure (the model's bandwidth
      fit and the baseline C, each with its own split and row order) runs
      under `num_seeds` seeds; seed 0 is the reported value. The interval
      is estimate -+ sqrt((t_{S-1} sd_seeds)^2 + (1.96 sd_boot)^2), where
      sd_boot is the bootstrap std (vmapped, `num_resamples`) of the NLL
      means over the scored rows with the fitted mixture held fixed: the
      test rows for fld, the training and the test rows for the gap. At
      small sizes (every training row in one Adam batch, no cap on the
      generated set) the model fit does not depend on its seed
      (`fld.fit_uses_key`): it is fitted once and the baseline's split
      carries the seed spread.
  copies, auth_pct  percentile bootstrap of the per-sample flags
      (copy / authentic) over the generated rows, nearest neighbours held
      fixed.
  c_t  k-means cells are a fit: C_T under `num_seeds` k-means seeds,
      combined as above with sd_boot = sqrt(sum_pi P_pi^2) / sum_pi P_pi,
      the std of the weighted mean of the cells' Z-scores when each has
      unit variance (exact under the null).

`gendiag.experiments.fld_memorization` (experiments/fld_memorization.py)
uses its pieces on a growing fraction of exact and noisy copies, mode
dropping and blur, with FLD, the gap, AuthPct, C_T, FID and improved
precision/recall side by side.
"""

from typing import Dict, List

import jax
from matplotlib.figure import Figure
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import fld as fld_lib
from gendiag.metrics import data_copying as data_copying_lib
from gendiag.metrics import memorization
from gendiag.ops import intervals as ci_lib
from gendiag.report import registry
from gendiag.report import result_cache

DEFAULTS = dict(
    max_generated=10_000,     # FLD's cap on centres (the reference's)
    max_epochs=50,            # bandwidth fit epochs (reference: 50)
    copy_threshold=1.0 / 3.0,  # NN1/NN2 distance ratio flagging a copy
    copy_finding_fraction=0.01,  # finding when >= 1% of samples are copies
    gap_threshold=-20.0,      # finding when gap < this
    fld_threshold=10.0,       # finding when FLD > this
    auth_max_samples=10_000,  # AuthPct subsets (the reference's)
    data_copying=True,        # C_T (needs gendiag.ops.quantize)
    num_cells=3,              # C_T's k-means cells (the reference's)
    top_k=5,                  # suspicious samples listed per model
    grid_pairs=6,             # image pairs per model in the copies figure
    num_seeds=3,              # fits per model (FLD, gap, C_T intervals)
    num_resamples=200,        # bootstrap replicates of the scored rows
    level=0.95,               # interval level
)

NOTE = (
    "Intervals: fld, fld_gap and c_t from {seeds} seeds of their fits "
    "(bandwidths and baseline; k-means cells) combined with the bootstrap "
    "spread of the scored rows (fit held fixed; for c_t the Z-scores' unit "
    "variance); copies and auth_pct: 95% bootstrap percentile intervals of "
    "the per-sample flags.")

DESCRIPTION = (
    "Feature Likelihood Divergence (Jiralerspong et al. 2023): a Gaussian per "
    "generated sample, bandwidths fitted to the training set, scored on "
    "held-out real data; `fld` is 100 x (test NLL per dimension - that of a "
    "fresh real sample of the same size), lower is better, ~0 = as good as "
    "real data. `fld_gap` = 100 x (train NLL - test NLL): strongly negative "
    "means the model reproduces its training set. `copies` counts generated "
    "samples whose nearest training sample is < 1/3 of the distance to the "
    "second nearest (a copy of it); `auth_pct` is the FLD package's AuthPct "
    "(-50 = all copies, higher = more novel); `c_t` is the data-copying test "
    "of Meehan et al. 2020 (< 0: copying, > 0: underfitting). Verdict rules "
    "(config `fld`): copies >= 1% of samples, fld_gap < -20, fld > 10. "
    "Intervals: seeds of the fits and bootstrap (see the notes).")


def test_set(inputs: EvalInputs):
  """(test features, note or None): inputs.test, else even rows of real."""
  if inputs.test is not None:
    return np.asarray(inputs.test), None
  real = np.asarray(inputs.real)
  return real[::2], (
      f"no held-out test set was given: FLD and C_T use the even rows of the "
      f"real set ({len(real[::2])} of {len(real)}) as the test set, assuming "
      "the real set is disjoint from the training set.")


def data_copying(train, test, gen, key, cfg, projection=None):
  """C_T, or (None, reason) when it cannot run; `projection` as in C_T."""
  try:
    return data_copying_lib.data_copying_test(
        train, test, gen, key=key, num_cells=cfg["num_cells"],
        projection=projection), None
  except ValueError as e:   # e.g. a cell without test samples
    return None, f"C_T skipped: {e}"


def _memorization(train, gen, key, cfg, train_nn):
  """(copy flags, AuthPct), AuthPct reusing the flags' k = 2 search and
  `train_nn` (`memorization.train_nn_distance`) unless it subsamples."""
  cap = cfg["auth_max_samples"]
  neighbours = memorization.nearest_train(train, gen, k=2)
  flags = memorization.copy_flags(train, gen, threshold=cfg["copy_threshold"],
                                  neighbours=neighbours)
  full = train_nn is not None and (cap is None or len(gen) <= cap)
  auth = memorization.auth_pct(train, gen, key=key, max_samples=cap,
                               train_nn_distance=train_nn,
                               neighbours=neighbours if full else None)
  return flags, auth


def _boot_std(key, values, num_resamples) -> float:
  """Bootstrap std of the mean of per-row values (vmapped resamples)."""
  reps = ci_lib.bootstrap_means(key, np.asarray(values),
                                num_resamples=num_resamples)
  return float(np.std(np.asarray(reps[:, 0], np.float64), ddof=1))


def _flag_interval(key, flags, scale, shift, num_resamples, level):
  """Percentile interval of scale * mean(flags) + shift over resamples."""
  reps = ci_lib.bootstrap_means(key, np.asarray(flags),
                                num_resamples=num_resamples)
  lo, hi = ci_lib.percentile_intervals(reps, level=level)[0]
  return (scale * float(lo) + shift, scale * float(hi) + shift)


def _ct_null_std(ct) -> float:
  """std of sum P Z / sum P over the used cells when each Z has variance 1."""
  p = np.where(np.asarray(ct.cell_used), np.asarray(ct.cell_test_fraction,
                                                    np.float64), 0.0)
  return float(np.sqrt(np.sum(p ** 2)) / np.sum(p))


def _suspicious_table(name, res, flags, top_k) -> List[str]:
  """Markdown rows of the top_k generated samples by FLD's O_j."""
  scores = np.asarray(res.memorization_scores)
  order = np.argsort(-scores)[:top_k]
  gen_index = np.asarray(res.generated_index)
  lines = [f"**{name}**: {int(flags.num_flagged)} of {len(flags.flagged)} "
           "samples flagged as copies.", "",
           "| rank | generated sample | O_j (FLD memorisation score) | "
           "nearest training sample | distance | NN1/NN2 ratio | copy |",
           "|---|---|---|---|---|---|---|"]
  for rank, j in enumerate(order, 1):
    g = int(gen_index[j])
    lines.append(
        f"| {rank} | {g} | {scores[j]:.3g} | {int(flags.train_index[g])} | "
        f"{float(flags.distance[g]):.3g} | {float(flags.ratio[g]):.3f} | "
        f"{'yes' if bool(flags.flagged[g]) else 'no'} |")
  return lines


def _pairs_figure(pairs: Dict[str, list], images, train_images) -> Figure:
  """Rows of (generated | copied training sample) image pairs per model."""
  models = list(pairs)
  cols = max(len(p) for p in pairs.values())
  fig = Figure(figsize=(1.3 * 2 * cols, 1.5 * len(models) + 0.4))
  axes = fig.subplots(len(models), 2 * cols, squeeze=False)
  for r, model in enumerate(models):
    for c in range(cols):
      for s, ax in enumerate(axes[r, 2 * c:2 * c + 2]):
        ax.set_xticks([])
        ax.set_yticks([])
        if c >= len(pairs[model]):
          ax.axis("off")
          continue
        g, t = pairs[model][c]
        img = images[model][g] if s == 0 else train_images[t]
        ax.imshow(np.asarray(img), cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.set_title(f"gen {g}" if s == 0 else f"train {t}", fontsize=7)
    axes[r, 0].set_ylabel(model, fontsize=8)
  fig.suptitle("Most suspicious generated samples (left) and the training "
               "samples they copy (right)", fontsize=9)
  return fig


def _bars_figure(models, fld_values, gap_values) -> Figure:
  fig = Figure(figsize=(2.0 + 1.6 * len(models), 3.2))
  ax_fld, ax_gap = fig.subplots(1, 2)
  for ax, values, title in ((ax_fld, fld_values, "FLD (lower is better)"),
                            (ax_gap, gap_values,
                             "gap = train - test NLL (x100)")):
    ax.bar(range(len(models)), values, color="#4c72b0")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def _columns(cfg):
  """The family's per-sample columns (ColumnInfo), by name."""
  col = lambda name, higher, text, threshold=None: registry.ColumnInfo(
      name, "fld", "generated", higher, text, threshold)
  return {
      "memorization_score": col(
          "memorization_score", True,
          "FLD's memorisation score O_j = max over training rows of "
          "log N(x; g_j, v_j I) / d (Jiralerspong et al. 2023): high when "
          "the sample's Gaussian sits on one training row"),
      "nn_ratio": col(
          "nn_ratio", False,
          "nearest / second-nearest training distance; below the threshold "
          "the sample is flagged as a copy of its nearest training row",
          float(cfg["copy_threshold"])),
      "nearest_train": col(
          "nearest_train", None, "index of the nearest training row"),
      "nearest_train_distance": col(
          "nearest_train_distance", None,
          "distance to the nearest training row"),
  }


def _add_columns(out, name, cfg, res, flags):
  cols = _columns(cfg)
  out.add_column(name, cols["memorization_score"], res.memorization_scores,
                 res.generated_index)
  out.add_column(name, cols["nn_ratio"], flags.ratio)
  out.add_column(name, cols["nearest_train"], flags.train_index)
  out.add_column(name, cols["nearest_train_distance"], flags.distance)


def fld_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "fld", **DEFAULTS)
  out = registry.FamilyOutput()
  train = np.asarray(inputs.train)
  test, note = test_set(inputs)
  if note:
    out.notes.append(note)
  key_base, key_models = jax.random.split(key)
  baselines: Dict[tuple, fld_lib.BaselineResult] = {}
  num_seeds, level = int(cfg["num_seeds"]), float(cfg["level"])
  num_b = int(cfg["num_resamples"])
  # Model- and seed-independent pieces, computed once per training set.
  cap = cfg["auth_max_samples"]
  train_nn = (result_cache.cached_call(
      "fld: the training set's nearest-neighbour distances",
      memorization.train_nn_distance, train)
              if cap is None or len(train) <= cap else None)
  projection = (result_cache.cached_call(
      "fld: the training set's PCA (C_T)", data_copying_lib.train_projection,
      train) if cfg["data_copying"] else None)

  def baseline(size, seed):
    """C for `size` centres; seed 0 is the reported one, shared by models."""
    if (size, seed) not in baselines:
      k = key_base if seed == 0 else jax.random.fold_in(key_base, seed)
      baselines[(size, seed)] = result_cache.cached_call(
          f"fld baseline ({size} centres, seed {seed})",
          fld_lib.fld_baseline, train, test, key=k, size=size,
          max_epochs=cfg["max_epochs"])
    return baselines[(size, seed)]

  fld_values, gap_values, pairs, sections = [], [], {}, []
  ct_notes, small_baseline = set(), []
  for i, (name, gen) in enumerate(inputs.generated.items()):
    gen = np.asarray(gen)
    k_fld, k_auth, k_ct = jax.random.split(jax.random.fold_in(key_models, i),
                                           3)
    size = fld_lib.default_baseline_size(len(train), len(gen),
                                         cfg["max_generated"])
    base = baseline(size, 0)
    if size < min(len(gen), cfg["max_generated"]):
      small_baseline.append(name)
    res = fld_lib.fld(train, test, gen, key=k_fld,
                      max_generated=cfg["max_generated"],
                      baseline_nll=float(base.nll),
                      max_epochs=cfg["max_epochs"])
    flags, auth = _memorization(train, gen, k_auth, cfg, train_nn)
    _add_columns(out, name, cfg, res, flags)
    n_used = len(np.asarray(res.generated_index))
    seed_fld, seed_gap = [float(res.fld)], [float(res.gap)]
    refit = fld_lib.fit_uses_key(len(train), len(gen), cfg["max_generated"])
    for s in range(1, num_seeds):
      c_s = float(baseline(size, s).nll)
      if not refit:   # every key gives this fit: only the baseline moves
        seed_fld.append(100.0 * (float(res.nll_test) - c_s))
        seed_gap.append(float(res.gap))
        continue
      again = fld_lib.fld(train, test, gen, key=jax.random.fold_in(k_fld, s),
                          max_generated=cfg["max_generated"],
                          baseline_nll=c_s, max_epochs=cfg["max_epochs"])
      seed_fld.append(float(again.fld))
      seed_gap.append(float(again.gap))
    k_test, k_train, k_copy, k_auth_b = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(key_models, i), 0x1B007), 4)
    sd_test = _boot_std(k_test, res.test_nlls, num_b)
    sd_train = _boot_std(k_train, res.train_nlls, num_b)
    metrics = {
        "fld": registry.entry(res.fld, ci=ci_lib.seed_interval(
            float(res.fld), seed_fld, 100.0 * sd_test, level=level),
                              seeds=seed_fld, baseline_nll=float(base.nll),
                              baseline_size=size,
                              fit_epochs=int(res.num_iterations),
                              fit_converged=bool(res.converged),
                              num_generated_used=n_used),
        "fld_gap": registry.entry(
            res.gap, ci=ci_lib.seed_interval(
                float(res.gap), seed_gap,
                100.0 * float(np.hypot(sd_train, sd_test)), level=level),
            seeds=seed_gap, nll_train=float(res.nll_train),
            nll_test=float(res.nll_test)),
        "copies": registry.entry(
            flags.num_flagged, ci=_flag_interval(
                k_copy, flags.flagged, len(gen), 0.0, num_b, level),
            fraction=float(flags.fraction), threshold=flags.threshold),
        "auth_pct": registry.entry(auth.auth_pct, ci=_flag_interval(
            k_auth_b, auth.authentic, 100.0, -50.0, num_b, level)),
    }
    if cfg["data_copying"]:
      ct, why = data_copying(train, test, gen, k_ct, cfg, projection)
      if ct is not None:
        seed_ct = [float(ct.c_t)]
        for s in range(1, num_seeds):
          again, _ = data_copying(train, test, gen,
                                  jax.random.fold_in(k_ct, s), cfg, projection)
          if again is not None:
            seed_ct.append(float(again.c_t))
        metrics["c_t"] = registry.entry(ct.c_t, ci=ci_lib.seed_interval(
            float(ct.c_t), seed_ct, _ct_null_std(ct), level=level),
                                        seeds=seed_ct)
      elif why:
        ct_notes.add(why)
    out.metrics[name] = metrics
    fld_values.append(float(res.fld))
    gap_values.append(float(res.gap))

    findings = []
    if float(flags.fraction) >= cfg["copy_finding_fraction"]:
      findings.append(
          f"{int(flags.num_flagged)} of {len(gen)} samples "
          f"({100 * float(flags.fraction):.0f}%) copy training samples")
    if float(res.gap) < cfg["gap_threshold"]:
      findings.append(f"training data far likelier than held-out data under "
                      f"its samples (FLD gap {float(res.gap):.3g})")
    if float(res.fld) > cfg["fld_threshold"]:
      findings.append(f"held-out real data less likely than under a real "
                      f"sample (FLD {float(res.fld):.3g})")
    if findings:
      out.findings[name] = findings
    if not bool(res.converged) and int(flags.num_flagged) == 0:
      out.notes.append(f"{name}: the bandwidth fit stopped at max_epochs="
                       f"{cfg['max_epochs']} without converging.")
    if int(flags.num_flagged) > 0:
      sections += _suspicious_table(name, res, flags, cfg["top_k"]) + [""]
      order = np.argsort(-np.asarray(res.memorization_scores))
      gen_index = np.asarray(res.generated_index)
      pairs[name] = [(int(gen_index[j]), int(flags.train_index[gen_index[j]]))
                     for j in order[:cfg["grid_pairs"]]]

  out.notes += sorted(ct_notes)
  out.notes.append(NOTE.format(seeds=num_seeds))
  if small_baseline:
    out.notes.append(
        f"the baseline has min(N, n_train / 2) = "
        f"{sorted({size for size, _ in baselines})} centres "
        f"for {len(train)} training samples, fewer than the N generated "
        "samples of " + ", ".join(small_baseline) + ": FLD of a model as good "
        "as real data is then slightly below 0 (the reference package's "
        "convention); compare models of equal N.")
  header = ["### Most suspicious generated samples", "",
            "Ranked by FLD's per-sample memorisation score O_j = max over "
            "training samples of log N(x; g_j, v_j I) / d; a sample is a copy "
            f"when its NN1/NN2 training distance ratio is below "
            f"{cfg['copy_threshold']:.3g}."]
  if sections:
    out.sections.append("\n".join(header + [""] + sections))
  else:
    out.sections.append("\n".join(header + ["", "No model has samples "
                                            "flagged as copies."]))
  models = list(inputs.generated)
  out.figures["fld.png"] = _bars_figure(models, fld_values, gap_values)
  if pairs and "train" in inputs.images and all(
      m in inputs.images for m in pairs):
    out.figures["fld_copies.png"] = _pairs_figure(
        pairs, inputs.images, inputs.images["train"])
  return out


FAMILY = registry.Family(
    "fld", fld_family, needs=("train",), description=DESCRIPTION)
