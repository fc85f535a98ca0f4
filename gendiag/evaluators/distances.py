"""Report families for the distribution distances FID, KID and MMD.

Intervals: FID's and its two terms' from one set of bootstrap replicates
(`frechet.fid_term_replicates`, the resamples of `fid_bootstrap`; estimate -+ z *
bootstrap std, the terms clipped at 0); KID's and MMD's from `mmd_bootstrap`
(percentile; for KID, of the full-sample unbiased MMD^2 with KID's kernel,
which estimates the same population value as the subset average). The MMD
test's p-value carries none (it is the test's own uncertainty statement).
"""


import jax
import jax.numpy as jnp
import numpy as np

from gendiag import report
from gendiag.evaluators import _intervals as ci_lib
from gendiag.metrics import frechet
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels


fid_term_replicates = frechet.fid_term_replicates


@report.register(
    "fid", description=(
        "Frechet distance between Gaussian fits (lower is better; intervals "
        "are 95% bootstrap intervals). One number for everything: it cannot "
        "say whether a model drops modes, blurs or copies."))
def fid_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "fid", num_resamples=50, level=0.95)
  out = report.FamilyOutput()
  real_stats = frechet.frechet_stats(inputs.real)
  real = jnp.asarray(inputs.real, jnp.float32)
  values, errors = [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    res = frechet.fid_from_stats(real_stats, frechet.frechet_stats(features))
    reps = fid_term_replicates(real, jnp.asarray(features, jnp.float32),
                               jax.random.fold_in(key, i),
                               num_resamples=int(cfg["num_resamples"]))
    estimates = [res.fid, res.mean_term, res.trace_term]
    fid_ci = ci_lib.normal_intervals(estimates[:1], reps[:, :1],
                                     level=cfg["level"],
                                     bounds=(-np.inf, np.inf))[0]
    terms_ci = ci_lib.normal_intervals(estimates[1:], reps[:, 1:],
                                       level=cfg["level"],
                                       bounds=(0.0, np.inf))
    out.metrics[name] = {
        "fid": report.entry(res.fid, ci=ci_lib.as_ci(fid_ci)),
        "fid_mean_term": report.entry(res.mean_term,
                                      ci=ci_lib.as_ci(terms_ci[0])),
        "fid_trace_term": report.entry(res.trace_term,
                                       ci=ci_lib.as_ci(terms_ci[1])),
    }
    values.append(float(res.fid))
    errors.append(float(fid_ci[1]) - float(res.fid))
  out.figures["fid.png"] = report.bar_chart(
      "FID (95% bootstrap interval)", list(inputs.generated), values, errors)
  return out


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
  out.notes.append("KID intervals: 95% bootstrap percentile interval of the "
                   "full-sample unbiased MMD^2 with KID's kernel (first "
                   f"{cfg['max_samples']} rows of each set).")
  cap = cfg["max_samples"]
  means, lows, highs = [], [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    key_kid, key_boot = jax.random.split(jax.random.fold_in(key, i))
    res = mmd_lib.kid(inputs.real, features, key=key_kid,
                      num_subsets=cfg["num_subsets"], subset_size=subset_size)
    boot = mmd_lib.mmd_bootstrap(inputs.real[:cap], features[:cap],
                                 key=key_boot, kernel=kernels.Polynomial(),
                                 num_resamples=cfg["num_resamples"])
    out.metrics[name] = {"kid": report.entry(
        res.mean, ci=(boot.ci_low, boot.ci_high), std=res.std,
        stderr=res.stderr)}
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
  cap = cfg["max_samples"]
  real = inputs.real[:cap]
  if inputs.real.shape[0] > cap or any(
      g.shape[0] > cap for g in inputs.generated.values()):
    out.notes.append(f"MMD uses the first {cap} samples of each set.")
  values, lows, highs = [], [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    key_test, key_boot = jax.random.split(jax.random.fold_in(key, i))
    res = mmd_lib.mmd_test(real, features[:cap], key=key_test, kernel=kernel,
                           num_permutations=cfg["num_permutations"])
    boot = mmd_lib.mmd_bootstrap(real, features[:cap], key=key_boot,
                                 kernel=kernel,
                                 num_resamples=cfg["num_resamples"])
    out.metrics[name] = {
        "mmd2": report.entry(res.statistic, ci=(boot.ci_low, boot.ci_high)),
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
