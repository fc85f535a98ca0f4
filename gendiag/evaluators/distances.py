"""Report families for the distribution distances FID, KID and MMD."""

import jax
import numpy as np

from gendiag import report
from gendiag.metrics import frechet
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels


@report.register(
    "fid", description=(
        "Frechet distance between Gaussian fits (lower is better). One number "
        "for everything: it cannot say whether a model drops modes, blurs or "
        "copies."))
def fid_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  del key  # deterministic
  real_stats = frechet.frechet_stats(inputs.real)
  out = report.FamilyOutput()
  for name, features in inputs.generated.items():
    res = frechet.fid_from_stats(real_stats, frechet.frechet_stats(features))
    out.metrics[name] = {
        "fid": report.entry(res.fid),
        "fid_mean_term": report.entry(res.mean_term),
        "fid_trace_term": report.entry(res.trace_term),
    }
  return out


@report.register(
    "kid", description=(
        "Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial "
        "kernel, averaged over random subsets (lower is better; about 0 for a "
        "perfect model, and can be slightly negative)."))
def kid_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "kid", num_subsets=100, subset_size=1000)
  out = report.FamilyOutput()
  smallest = min([inputs.real.shape[0]]
                 + [g.shape[0] for g in inputs.generated.values()])
  subset_size = min(cfg["subset_size"], smallest)
  if subset_size < cfg["subset_size"]:
    out.notes.append(f"subset_size lowered to {subset_size}, the smallest "
                     "sample.")
  means, stds = [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    res = mmd_lib.kid(inputs.real, features, key=jax.random.fold_in(key, i),
                      num_subsets=cfg["num_subsets"], subset_size=subset_size)
    out.metrics[name] = {"kid": report.entry(res.mean, std=res.std,
                                             stderr=res.stderr)}
    means.append(float(res.mean))
    stds.append(float(res.std))
  out.figures["kid.png"] = report.bar_chart(
      "KID (mean +- std over subsets)", list(inputs.generated), means, stds)
  return out


@report.register(
    "mmd", description=(
        "MMD^2 (unbiased) with a Gaussian kernel whose bandwidth is the "
        "median distance within the real set, and a permutation test of "
        "P = Q (p < 0.05: the model's distribution differs detectably)."))
def mmd_family(inputs: report.EvalInputs, key) -> report.FamilyOutput:
  cfg = report.family_config(inputs, "mmd", num_permutations=200,
                             max_samples=2000)
  kernel = kernels.Gaussian(kernels.median_heuristic(inputs.real))
  out = report.FamilyOutput()
  cap = cfg["max_samples"]
  real = inputs.real[:cap]
  if inputs.real.shape[0] > cap or any(
      g.shape[0] > cap for g in inputs.generated.values()):
    out.notes.append(f"the permutation test uses the first {cap} samples of "
                     "each set.")
  values = []
  for i, (name, features) in enumerate(inputs.generated.items()):
    res = mmd_lib.mmd_test(real, features[:cap], key=jax.random.fold_in(key, i),
                           kernel=kernel,
                           num_permutations=cfg["num_permutations"])
    out.metrics[name] = {"mmd2": report.entry(res.statistic),
                         "mmd_p_value": report.entry(res.p_value)}
    values.append(float(res.statistic))
  out.figures["mmd.png"] = report.bar_chart(
      "MMD^2 (Gaussian kernel, median bandwidth)", list(inputs.generated),
      np.asarray(values))
  return out
