"""Report family "fid": the Frechet distance and its two terms.

Intervals: FID's and its two terms' are estimate -+ z * standard error, the
terms clipped at 0. The standard error is the influence-function (delta
method) one of `frechet_delta.fid_standard_error` when both sets have more
rows than features (about two FIDs of work), else the std of bootstrap
replicates (`frechet.fid_term_replicates`, the resamples of `fid_bootstrap`;
one FID per replicate, cheap at such n); config `fid.interval` forces
"bootstrap" or "delta".

References (`reference` of fid and its terms): the same computation,
interval included, on held-out real rows in place of the model's samples
(`sampling.reference_sets`, subsampled to the model's size), once per
distinct model size; with the real set itself as the real side the shapes
are the model's, so every program is reused.

In DINOv2 space (images embedded by a DINOv2 tower) the same numbers are
FD_DINOv2 (Stein et al. 2023, dgm-eval; torch-fidelity's FID with its
dinov2 extractors), and the entries are named fd_dinov2,
fd_dinov2_mean_term and fd_dinov2_trace_term.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import frechet
from gendiag.metrics import frechet_delta
from gendiag.ops import intervals as ci_lib
from gendiag.report import registry
from gendiag.report import render
from gendiag.report import result_cache
from gendiag.report import sampling

DESCRIPTION = (
    "Frechet distance between Gaussian fits (lower is better; 95% "
    "intervals from the delta method's standard error, or a bootstrap's "
    "where a set has no more rows than features). One number for "
    "everything: it cannot say whether a model drops modes, blurs or "
    "copies.")


def fid_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "fid", num_resamples=50, level=0.95,
                               interval="auto")
  if cfg["interval"] not in ("auto", "delta", "bootstrap"):
    raise ValueError(f"fid.interval must be 'auto', 'delta' or 'bootstrap'; "
                     f"got {cfg['interval']!r}.")
  methods = set()
  out = registry.FamilyOutput()
  real_stats = result_cache.cached_call(
      "fid: the real set's statistics", frechet.frechet_stats, inputs.real)
  real = jnp.asarray(inputs.real, jnp.float32)
  values, errors, refs, sides = [], [], {}, {}

  def side_of(real_x):
    """The real set's `real_side`, once per real set (models share it)."""
    if id(real_x) not in sides:
      sides[id(real_x)] = (real_x, result_cache.cached_call(
          "fid: the real set's eigenbasis", frechet_delta.real_side, real_x))
    return sides[id(real_x)][1]

  def fid_entries(real_x, real_st, features, key_boot, reference=None,
                  cache_label=None):
    """{fid, fid_mean_term, fid_trace_term} entries with intervals
    (`cache_label`: a reference's, whose results `result_cache` keeps)."""
    features = jnp.asarray(features, jnp.float32)
    full_rank = min(real_x.shape[0], features.shape[0]) > features.shape[1]
    delta = cfg["interval"] == "delta" or (cfg["interval"] == "auto"
                                           and full_rank)
    if delta:  # fid_standard_error computes the FID too: use its values
      se = res = result_cache.cached_call(
          cache_label, frechet_delta.fid_standard_error, real_x, features,
          real_side=side_of(real_x))
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
      reps = result_cache.cached_call(
          cache_label, frechet.fid_term_replicates, real_x, features,
          key_boot, num_resamples=int(cfg["num_resamples"]))
      fid_ci = ci_lib.normal_intervals(estimates[:1], reps[:, :1],
                                       level=cfg["level"],
                                       bounds=(-np.inf, np.inf))[0]
      terms_ci = ci_lib.normal_intervals(estimates[1:], reps[:, 1:],
                                         level=cfg["level"],
                                         bounds=(0.0, np.inf))
      methods.add(f"bootstrap ({int(cfg['num_resamples'])} resamples)")
    ref = reference or {}
    return {
        "fid": registry.entry(res.fid, ci=ci_lib.as_ci(fid_ci),
                              reference=ref.get("fid")),
        "fid_mean_term": registry.entry(res.mean_term,
                                        ci=ci_lib.as_ci(terms_ci[0]),
                                        reference=ref.get("fid_mean_term")),
        "fid_trace_term": registry.entry(res.trace_term,
                                         ci=ci_lib.as_ci(terms_ci[1]),
                                         reference=ref.get("fid_trace_term")),
    }, fid_ci, float(res.fid)

  for i, (name, features) in enumerate(inputs.generated.items()):
    size = features.shape[0]
    if size not in refs:
      sets = sampling.reference_sets(inputs, size)
      ref_real = (real, real_stats) if sets.same_real else (
          jnp.asarray(sets.real, jnp.float32), frechet.frechet_stats(
              sets.real))
      refs[size] = fid_entries(*ref_real, sets.heldout,
                               jax.random.fold_in(key, 0x7EF + size),
                               cache_label=f"fid reference (n = {size})")[0]
      out.notes.append(f"reference (n = {size}): {sets.source}.")
    out.metrics[name], fid_ci, fid = fid_entries(
        real, real_stats, features, jax.random.fold_in(key, i), refs[size])
    values.append(fid)
    errors.append(float(fid_ci[1]) - fid)
  out.notes.append("FID intervals: estimate -+ z * standard error, from "
                   + " and ".join(sorted(methods)) + ".")
  title = "FID"
  if inputs.feature_family == "dinov2":
    title = "FD_DINOv2"
    out.metrics = {m: {k.replace("fid", "fd_dinov2", 1): v
                       for k, v in entries.items()}
                   for m, entries in out.metrics.items()}
    out.notes.append(
        "In DINOv2 space this Frechet distance is FD_DINOv2 (Stein et al. "
        "2023): dgm-eval's number with ViT-L/14 and the dgm_eval_dinov2 "
        "preprocessing, torch-fidelity's with torch_fidelity_dinov2.")
  out.figures["fid.png"] = render.bar_chart(
      f"{title} (95% interval)", list(inputs.generated), values, errors)
  return out


FAMILY = registry.Family("fid", fid_family, description=DESCRIPTION)
