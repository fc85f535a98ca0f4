"""Report families for the distribution distances FID, KID and MMD.

Intervals: FID's and its two terms' are estimate -+ z * standard error, the
terms clipped at 0. The standard error is the influence-function (delta
method) one of `frechet_delta.fid_standard_error` when both sets have more
rows than features (about two FIDs of work), else the std of bootstrap
replicates (`frechet.fid_term_replicates`, the resamples of `fid_bootstrap`;
one FID per replicate, cheap at such n); config `fid.interval` forces
"bootstrap" or "delta"; KID's and MMD's from `mmd_bootstrap`
(percentile; for KID, of the full-sample unbiased MMD^2 with KID's kernel,
which estimates the same population value as the subset average). The MMD
test's p-value carries none (it is the test's own uncertainty statement).

Caps: KID's interval and the MMD family use at most `max_samples` rows of
each set, the seeded random subsample of `report.subsample_rows` (the same
rows of a set in every family that caps, never the first rows).

References (`reference` of fid, its terms, kid and mmd2): the same
computation, interval included, on held-out real rows in place of the
model's samples (`report.reference_sets`, subsampled to the model's size
and capped as the model is), once per distinct model size; with the real
set itself as the real side the shapes are the model's, so every program is
reused.
"""


import jax
import jax.numpy as jnp
import numpy as np

from gendiag import report
from gendiag.ops import intervals as ci_lib
from gendiag.metrics import frechet
from gendiag.metrics import frechet_delta
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels


fid_term_replicates = frechet.fid_term_replicates


@report.register(
    "fid", description=(
        "Frechet distance between Gaussian fits (lower is better; 95% "
        "intervals from the delta method's standard error, or a bootstrap's "
        "where a set has no more rows than features). One number for "
        "everything: it cannot say whether a model drops modes, blurs or "
        "copies."))
def fid_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "fid", num_resamples=50, level=0.95,
                             interval="auto")
  if cfg["interval"] not in ("auto", "delta", "bootstrap"):
    raise ValueError(f"fid.interval must be 'auto', 'delta' or 'bootstrap'; "
                     f"got {cfg['interval']!r}.")
  methods = set()
  out = report.FamilyOutput()
  real_stats = frechet.frechet_stats(inputs.real)
  real = jnp.asarray(inputs.real, jnp.float32)
  values, errors, refs = [], [], {}

  def fid_entries(real_x, real_st, features, key_boot, reference=None):
    """{fid, fid_mean_term, fid_trace_term} entries with intervals."""
    features = jnp.asarray(features, jnp.float32)
    full_rank = min(real_x.shape[0], features.shape[0]) > features.shape[1]
    delta = cfg["interval"] == "delta" or (cfg["interval"] == "auto"
                                            and full_rank)
    if delta:  # fid_standard_error computes the FID too: use its values
      se = res = frechet_delta.fid_standard_error(real_x, features)
      estimates = [res.fid, res.mean_term, res.trace_term]
      ses = [se.fid_se, se.mean_term_se, se.trace_term_se]
      fid_ci = ci_lib.standard_error_intervals(
          estimates[:1], ses[:1], level=cfg["level"],
          bounds=(-np.inf, np.inf))[0]
      terms_ci = ci_lib.standard_error_intervals(
          estimates[1:], ses[1:], level=cfg["level"], bounds=(0.0, np.inf))
      methods.add("delta method (influence-function standard error)")
    else:
      res = frechet.fid_from_stats(real_st, frechet.frechet_stats(features))
      estimates = [res.fid, res.mean_term, res.trace_term]
      reps = fid_term_replicates(real_x, features, key_boot,
                                 num_resamples=int(cfg["num_resamples"]))
      fid_ci = ci_lib.normal_intervals(estimates[:1], reps[:, :1],
                                       level=cfg["level"],
                                       bounds=(-np.inf, np.inf))[0]
      terms_ci = ci_lib.normal_intervals(estimates[1:], reps[:, 1:],
                                         level=cfg["level"],
                                         bounds=(0.0, np.inf))
      methods.add(f"bootstrap ({int(cfg['num_resamples'])} resamples)")
    ref = reference or {}
    return {
        "fid": report.entry(res.fid, ci=ci_lib.as_ci(fid_ci),
                            reference=ref.get("fid")),
        "fid_mean_term": report.entry(res.mean_term,
                                      ci=ci_lib.as_ci(terms_ci[0]),
                                      reference=ref.get("fid_mean_term")),
        "fid_trace_term": report.entry(res.trace_term,
                                       ci=ci_lib.as_ci(terms_ci[1]),
                                       reference=ref.get("fid_trace_term")),
    }, fid_ci, float(res.fid)

  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets = report.reference_sets(inputs, size)
      ref_real = (real, real_stats) if sets.same_real else (
          jnp.asarray(sets.real, jnp.float32), frechet.frechet_stats(
              sets.real))
      refs[size] = fid_entries(*ref_real, sets.heldout,
                               jax.random.fold_in(key, 0x7EF + size))[0]
      out.notes.append(f"reference (n = {size}): {sets.source}.")
    out.metrics[name], fid_ci, fid = fid_entries(
        real, real_stats, features, jax.random.fold_in(key, i), refs[size])
    values.append(fid)
    errors.append(float(fid_ci[1]) - fid)
  out.notes.append("FID intervals: estimate -+ z * standard error, from "
                   + " and ".join(sorted(methods)) + ".")
  out.figures["fid.png"] = report.bar_chart(
      "FID (95% interval)", list(inputs.generated), values, errors)
  return out


def _capped_reference(inputs, size, cap, real_capped):
  """(reference sets, their real side capped, their held-out side capped).

  The real side is `real_capped` (the real set's own capped rows) when the
  reference uses the real set itself, else its own seeded subsample.
  """
  sets = report.reference_sets(inputs, size)
  ref_real, = (real_capped,) if sets.same_real else report.subsample_rows(
      inputs, "reference real", cap, sets.real)
  held, = report.subsample_rows(inputs, "reference", cap, sets.heldout)
  return sets, ref_real, held


@report.register(
    "kid", description=(
        "Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial "
        "kernel, averaged over random subsets (lower is better; about 0 for a "
        "perfect model, and can be slightly negative)."))
def kid_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "kid", num_subsets=100, subset_size=1000,
                             num_resamples=100, max_samples=5000)
  out = report.FamilyOutput()
  smallest = min([inputs.real.shape[0]]
                 + [g.shape[0] for g in inputs.generated.values()])
  subset_size = min(cfg["subset_size"], smallest)
  if subset_size < cfg["subset_size"]:
    out.notes.append(f"subset_size lowered to {subset_size}, the smallest "
                     "sample.")
  cap = int(cfg["max_samples"])
  out.notes.append("KID intervals: 95% bootstrap percentile interval of the "
                   "full-sample unbiased MMD^2 with KID's kernel (at most "
                   f"{cap} rows of each set, a seeded random subsample).")
  note = report.subsample_note(inputs, cap, "the kid interval, mmd and gel")
  if note:
    out.notes.append(note)
  real_cap, = report.subsample_rows(inputs, "real", cap, inputs.real)

  def kid_entry(real_x, real_c, features, features_c, key_i, reference=None,
                rows_used=None):
    key_kid, key_boot = jax.random.split(key_i)
    res = mmd_lib.kid(real_x, features, key=key_kid,
                      num_subsets=cfg["num_subsets"], subset_size=subset_size)
    boot = mmd_lib.mmd_bootstrap(real_c, features_c,
                                 key=key_boot, kernel=kernels.Polynomial(),
                                 num_resamples=cfg["num_resamples"])
    extra = {} if rows_used is None else {"rows_used": rows_used}
    return report.entry(res.mean, ci=(boot.ci_low, boot.ci_high),
                        std=res.std, stderr=res.stderr, reference=reference,
                        **extra), res, boot

  refs = {}
  means, lows, highs = [], [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets, ref_cap, held_cap = _capped_reference(inputs, size, cap, real_cap)
      refs[size] = kid_entry(sets.real, ref_cap, sets.heldout, held_cap,
                             jax.random.fold_in(key, 0x7EF + size))[0]
      out.notes.append(f"reference (n = {size}): {sets.source}.")
    gen_cap, = report.subsample_rows(inputs, name, cap, features)
    kid_e, res, boot = kid_entry(
        inputs.real, real_cap, features, gen_cap, jax.random.fold_in(key, i),
        refs[size], rows_used=[len(real_cap), len(gen_cap)])
    out.metrics[name] = {"kid": kid_e}
    means.append(float(res.mean))
    lows.append(float(res.mean - boot.ci_low))
    highs.append(float(boot.ci_high - res.mean))
  out.figures["kid.png"] = report.bar_chart(
      "KID (95% bootstrap interval)", list(inputs.generated), means,
      np.maximum(np.array([lows, highs]), 0.0))
  return out


@report.register(
    "mmd", description=(
        "MMD^2 (unbiased) with a Gaussian kernel whose bandwidth is the "
        "median distance within the real set, its 95% bootstrap interval, and "
        "a permutation test of P = Q. Verdict rule: p < alpha (default 0.05, "
        "not corrected for the number of models) reports that the model's "
        "samples differ detectably from the real ones."))
def mmd_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "mmd", num_permutations=200,
                             num_resamples=200, max_samples=2000, alpha=0.05)
  kernel = kernels.Gaussian(kernels.median_heuristic(inputs.real))
  out = report.FamilyOutput()
  cap = int(cfg["max_samples"])
  real, = report.subsample_rows(inputs, "real", cap, inputs.real)
  note = report.subsample_note(inputs, cap, "the kid interval, mmd and gel")
  if note:
    out.notes.append(note)
  values, lows, highs, refs = [], [], [], {}
  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets, ref_real, held = _capped_reference(inputs, size, cap, real)
      ref = mmd_lib.mmd_bootstrap(ref_real, held, kernel=kernel,
                                  key=jax.random.fold_in(key, 0x7EF + size),
                                  num_resamples=cfg["num_resamples"])
      refs[size] = report.entry(ref.statistic, ci=(ref.ci_low, ref.ci_high))
      out.notes.append(f"reference (n = {size}): {sets.source}; its MMD^2 "
                       "is the bootstrap's full-sample statistic.")
    gen, = report.subsample_rows(inputs, name, cap, features)
    key_test, key_boot = jax.random.split(jax.random.fold_in(key, i))
    res = mmd_lib.mmd_test(real, gen, key=key_test, kernel=kernel,
                           num_permutations=cfg["num_permutations"])
    boot = mmd_lib.mmd_bootstrap(real, gen, key=key_boot,
                                 kernel=kernel,
                                 num_resamples=cfg["num_resamples"])
    out.metrics[name] = {
        "mmd2": report.entry(res.statistic, ci=(boot.ci_low, boot.ci_high),
                             reference=refs[size],
                             rows_used=[len(real), len(gen)]),
        "mmd_p_value": report.entry(res.p_value)}
    if float(res.p_value) < cfg["alpha"]:
      out.findings[name] = [
          f"differs detectably from the real samples (MMD test p = "
          f"{float(res.p_value):.2g})"]
    values.append(float(res.statistic))
    lows.append(float(res.statistic - boot.ci_low))
    highs.append(float(boot.ci_high - res.statistic))
  out.figures["mmd.png"] = report.bar_chart(
      "MMD^2 (Gaussian kernel, median bandwidth; 95% bootstrap interval)",
      list(inputs.generated), values,
      np.maximum(np.array([lows, highs]), 0.0))
  return out
