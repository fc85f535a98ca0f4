"""Report family "mmd": MMD^2 with a Gaussian kernel and its permutation test.

Interval: the percentile interval of `mmd_bootstrap`. The MMD test's p-value
carries none (it is the test's own uncertainty statement).

Caps: KID's interval and the MMD family use at most `max_samples` rows of
each set, the seeded random subsample of `sampling.subsample_rows` (the same
rows of a set in every family that caps, never the first rows).

References (`reference` of mmd2): the same computation, interval included,
on held-out real rows in place of the model's samples
(`sampling.capped_reference`, subsampled to the model's size and capped as
the model is), once per distinct model size.
"""

import jax
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels
from gendiag.report import registry
from gendiag.report import result_cache
from gendiag.report import render
from gendiag.report import sampling

DESCRIPTION = (
    "MMD^2 (unbiased) with a Gaussian kernel whose bandwidth is the "
    "median distance within the real set, its 95% bootstrap interval, and "
    "a permutation test of P = Q. Verdict rule: p < alpha (default 0.05, "
    "not corrected for the number of models) reports that the model's "
    "samples differ detectably from the real ones.")


WITNESS_GENERATED = registry.ColumnInfo(
    "mmd_witness", "mmd", "generated", False,
    "MMD witness f(t) = mean_i k(x_i, t) - mean_j k(y_j, t) (same kernel) at "
    "the sample: negative where the model puts more mass than the real data")
WITNESS_REAL = registry.ColumnInfo(
    "mmd_witness_real", "mmd", "real", True,
    "MMD witness at the real row: positive where the real data has more "
    "mass than the model (missed or under-weighted regions)")


def _witness_columns(out, inputs, name, real, gen, kernel, cap):
  """The witness at the rows the test used (capped sets: their subsample)."""
  values = np.asarray(mmd_lib.witness(
      real, gen, np.concatenate([real, gen]), kernel=kernel))
  rows = lambda set_name, n: sampling.subsample_index(inputs, set_name, n, cap)
  out.add_column(name, WITNESS_REAL, values[:len(real)],
                 rows("real", len(inputs.real)))
  out.add_column(name, WITNESS_GENERATED, values[len(real):],
                 rows(name, len(inputs.generated[name])))


def mmd_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "mmd", num_permutations=200,
                               num_resamples=200, max_samples=2000, alpha=0.05)
  kernel = kernels.Gaussian(kernels.median_heuristic(inputs.real))
  out = registry.FamilyOutput()
  cap = int(cfg["max_samples"])
  real, = sampling.subsample_rows(inputs, "real", cap, inputs.real)
  note = sampling.subsample_note(inputs, cap, "the kid interval, mmd and gel")
  if note:
    out.notes.append(note)
  values, lows, highs, refs = [], [], [], {}
  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets, ref_real, held = sampling.capped_reference(inputs, size, cap, real)
      ref = result_cache.cached_call(
          f"mmd reference (n = {size})", mmd_lib.mmd_bootstrap, ref_real,
          held, kernel=kernel, key=jax.random.fold_in(key, 0x7EF + size),
          num_resamples=cfg["num_resamples"])
      refs[size] = registry.entry(ref.statistic, ci=(ref.ci_low, ref.ci_high))
      out.notes.append(f"reference (n = {size}): {sets.source}; its MMD^2 "
                       "is the bootstrap's full-sample statistic.")
    gen, = sampling.subsample_rows(inputs, name, cap, features)
    key_test, key_boot = jax.random.split(jax.random.fold_in(key, i))
    res = mmd_lib.mmd_test(real, gen, key=key_test, kernel=kernel,
                           num_permutations=cfg["num_permutations"])
    boot = mmd_lib.mmd_bootstrap(real, gen, key=key_boot,
                                 kernel=kernel,
                                 num_resamples=cfg["num_resamples"])
    _witness_columns(out, inputs, name, real, gen, kernel, cap)
    out.metrics[name] = {
        "mmd2": registry.entry(res.statistic, ci=(boot.ci_low, boot.ci_high),
                               reference=refs[size],
                               rows_used=[len(real), len(gen)]),
        "mmd_p_value": registry.entry(res.p_value)}
    if float(res.p_value) < cfg["alpha"]:
      out.findings[name] = [
          f"differs detectably from the real samples (MMD test p = "
          f"{float(res.p_value):.2g})"]
    values.append(float(res.statistic))
    lows.append(float(res.statistic - boot.ci_low))
    highs.append(float(boot.ci_high - res.statistic))
  out.figures["mmd.png"] = render.bar_chart(
      "MMD^2 (Gaussian kernel, median bandwidth; 95% bootstrap interval)",
      list(inputs.generated), values,
      np.maximum(np.array([lows, highs]), 0.0))
  return out


FAMILY = registry.Family("mmd", mmd_family, description=DESCRIPTION)
