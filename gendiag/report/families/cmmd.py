"""Report family "cmmd": CMMD in CLIP space (Jayasumana et al. 2024).

Runs only on CLIP image embeddings (images embedded by a CLIP tower: need
"clip_embeddings"). Entries:
  cmmd          google-research/cmmd's number: 1000 x the biased MMD^2,
                Gaussian kernel sigma = 10, on the L2-normalised embeddings
                of every row (`gendiag.metrics.cmmd.cmmd`), no interval;
  cmmd_unbiased gendiag's unbiased variant with the percentile interval of
                the bootstrap, and cmmd_p_value its permutation test's
                (`cmmd_test`), on at most `max_samples` rows of each set.
CMMD's own setting is CLIP ViT-L/14@336px with the cmmd preprocessing;
another tower or front-end gives a CMMD-like number in that space.

References (`reference` of cmmd): the same computation on held-out real
rows in place of the model's (`sampling.reference_sets`), once per
distinct model size.
"""

import jax

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import cmmd as cmmd_lib
from gendiag.report import registry
from gendiag.report import render
from gendiag.report import sampling

DESCRIPTION = (
    "CMMD (Jayasumana et al. 2024): 1000 x MMD^2 with a Gaussian kernel "
    "(sigma = 10) between L2-normalised CLIP image embeddings; lower is "
    "better, 0 for identical sets. `cmmd` is google-research/cmmd's biased "
    "estimator on every row; `cmmd_unbiased` is the unbiased estimator with "
    "its permutation test (p < alpha: the model's images differ detectably "
    "from the real ones in CLIP space).")


def cmmd_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "cmmd", num_permutations=200,
                               num_resamples=100, max_samples=2000,
                               alpha=0.05)
  out = registry.FamilyOutput()
  cap = int(cfg["max_samples"])
  real_capped, = sampling.subsample_rows(inputs, "real", cap, inputs.real)
  note = sampling.subsample_note(inputs, cap, "cmmd_unbiased")
  if note:
    out.notes.append(note)
  values, refs = [], {}
  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets = sampling.reference_sets(inputs, size)
      refs[size] = registry.entry(cmmd_lib.cmmd(sets.real, sets.heldout))
      out.notes.append(f"reference (n = {size}): {sets.source}.")
    value = cmmd_lib.cmmd(inputs.real, features)
    gen, = sampling.subsample_rows(inputs, name, cap, features)
    test = cmmd_lib.cmmd_test(real_capped, gen, key=jax.random.fold_in(key, i),
                              num_permutations=cfg["num_permutations"],
                              num_resamples=cfg["num_resamples"])
    out.metrics[name] = {
        "cmmd": registry.entry(value, reference=refs[size]),
        "cmmd_unbiased": registry.entry(
            test.cmmd, ci=(test.ci_low, test.ci_high),
            rows_used=[len(real_capped), len(gen)]),
        "cmmd_p_value": registry.entry(test.p_value)}
    if float(test.p_value) < cfg["alpha"]:
      out.findings[name] = [
          f"differs detectably from the real images in CLIP space (CMMD "
          f"test p = {float(test.p_value):.2g})"]
    values.append(float(value))
  out.notes.append("cmmd is google-research/cmmd's number as that peer "
                   "reports it, without an interval; cmmd_unbiased carries "
                   "the interval (bootstrap) and cmmd_p_value its test.")
  out.figures["cmmd.png"] = render.bar_chart(
      "CMMD (biased, x1000)", list(inputs.generated), values,
      None)
  return out


FAMILY = registry.Family("cmmd", cmmd_family, needs=("clip_embeddings",),
                         description=DESCRIPTION)
