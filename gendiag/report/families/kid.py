"""Report family "kid": the Kernel Inception Distance.

Interval: the percentile interval of `mmd_bootstrap` of the full-sample
unbiased MMD^2 with KID's kernel, which estimates the same population value
as the subset average.

Subsets: every model (and a reference on the real set itself) meets the
same random real subsets, so their kernel sums are computed once
(`kid.kid_real_sums`); each model's own subsets are drawn from it.

Caps: KID's interval and the MMD family use at most `max_samples` rows of
each set, the seeded random subsample of `sampling.subsample_rows` (the same
rows of a set in every family that caps, never the first rows).

References (`reference` of kid): the same computation, interval included,
on held-out real rows in place of the model's samples
(`sampling.capped_reference`, subsampled to the model's size and capped as
the model is), once per distinct model size.
"""

import jax
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import kid as kid_lib
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels
from gendiag.report import registry
from gendiag.report import render
from gendiag.report import result_cache
from gendiag.report import sampling

DESCRIPTION = (
    "Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial "
    "kernel, averaged over random subsets (lower is better; about 0 for a "
    "perfect model, and can be slightly negative).")


def kid_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "kid", num_subsets=100, subset_size=1000,
                               num_resamples=100, max_samples=5000)
  out = registry.FamilyOutput()
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
  note = sampling.subsample_note(inputs, cap, "the kid interval, mmd and gel")
  if note:
    out.notes.append(note)
  real_cap, = sampling.subsample_rows(inputs, "real", cap, inputs.real)

  # One key for every model's subsets: each model meets the same real
  # subsets, whose kernel sums S_XX' are computed once (kid_real_sums).
  key_subsets = jax.random.fold_in(key, 0x5B5)
  real_sums = {}

  def kid_entry(real_x, real_c, features, features_c, key_i, reference=None,
                rows_used=None, is_real_set=True, cache_label=None):
    # A reference on split real rows can have fewer rows than the models.
    size = min(subset_size, real_x.shape[0], features.shape[0])
    if size < subset_size:
      out.notes.append(f"the reference's KID uses subsets of {size} rows "
                       "(its split real sets are smaller than the models').")
    sums = None
    if is_real_set:   # the real set itself: its sums serve every model
      if size not in real_sums:
        real_sums[size] = result_cache.cached_call(
            f"kid: the real subsets' kernel sums ({size} rows)",
            kid_lib.kid_real_sums, real_x, key=key_subsets,
            num_subsets=cfg["num_subsets"], subset_size=size)
      sums = real_sums[size]
    res = result_cache.cached_call(
        cache_label, kid_lib.kid, real_x, features, key=key_subsets,
        num_subsets=cfg["num_subsets"], subset_size=size, real_sums=sums)
    key_boot = jax.random.split(key_i)[1]
    boot = result_cache.cached_call(
        cache_label, mmd_lib.mmd_bootstrap, real_c, features_c,
        key=key_boot, kernel=kernels.Polynomial(),
        num_resamples=cfg["num_resamples"])
    extra = {} if rows_used is None else {"rows_used": rows_used}
    return registry.entry(res.mean, ci=(boot.ci_low, boot.ci_high),
                          std=res.std, stderr=res.stderr, reference=reference,
                          **extra), res, boot

  refs = {}
  means, lows, highs = [], [], []
  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets, ref_cap, held_cap = sampling.capped_reference(
          inputs, size, cap, real_cap)
      refs[size] = kid_entry(sets.real, ref_cap, sets.heldout, held_cap,
                             jax.random.fold_in(key, 0x7EF + size),
                             is_real_set=sets.same_real,
                             cache_label=f"kid reference (n = {size})")[0]
      out.notes.append(f"reference (n = {size}): {sets.source}.")
    gen_cap, = sampling.subsample_rows(inputs, name, cap, features)
    kid_e, res, boot = kid_entry(
        inputs.real, real_cap, features, gen_cap, jax.random.fold_in(key, i),
        refs[size], rows_used=[len(real_cap), len(gen_cap)])
    out.metrics[name] = {"kid": kid_e}
    means.append(float(res.mean))
    lows.append(float(res.mean - boot.ci_low))
    highs.append(float(boot.ci_high - res.mean))
  out.figures["kid.png"] = render.bar_chart(
      "KID (95% bootstrap interval)", list(inputs.generated), means,
      np.maximum(np.array([lows, highs]), 0.0))
  return out


FAMILY = registry.Family("kid", kid_family, description=DESCRIPTION)
