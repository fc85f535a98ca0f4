"""Report family "image_scores": sFID, the Inception Score, and FID / sFID
against precomputed reference statistics.

- sfid: the Frechet distance (`frechet.fid`) of the spatial features
  (`EvalInputs.real_spatial` against each model's `generated_spatial`; for
  the Inception, Mixed_6d.branch1x1's first 7 channels, 2023 values, as in
  the ADM evaluator; Nash et al. 2021). Its interval is families/fid.py's:
  estimate -+ z * the delta method's standard error when both sets have
  more rows than features, else the std of bootstrap replicates; its
  `reference` is the same computation on a seeded random split of the real
  spatial features (held-out rows against the rest).
- inception_score: torch-fidelity's convention (10 splits of a fixed
  RandomState(2020) shuffle) of the unbiased logits; interval: the Student-t
  interval of the mean of the split scores (disjoint splits, so independent
  estimates of the split-size IS). `adm` holds the ADM evaluator's number
  (chunks of 5000 rows, mean only) and `improved_gan` improved-gan's and
  StyleGAN's (10 consecutive splits). With `real_logits`, the `reference`
  is the same score of a seeded random subsample of the real rows of the
  model's size.
- fid_vs_reference_stats, sfid_vs_reference_stats: FID against the
  reference statistics (`EvalInputs.reference`, e.g. an ADM `VIRTUAL_*.npz`
  read by `gendiag.io.load_reference`): the number the ADM evaluator prints.
  The reference statistics are taken as exact (they cover a whole training
  set, and the files hold no rows to resample), so the interval is the
  generated side's alone: the delta method's influence function of the
  generated rows where they outnumber the features, else a bootstrap of
  them.

References:
  Nash, Menick, Dieleman & Battaglia, "Generating Images with Sparse
  Representations", ICML 2021 (sFID).
  Salimans et al. 2016 (IS); Dhariwal & Nichol 2021 (the ADM evaluator).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gendiag.data.inputs import EvalInputs
from gendiag.metrics import frechet
from gendiag.metrics import frechet_delta
from gendiag.metrics import inception_score as is_lib
from gendiag.ops import intervals as ci_lib
from gendiag.report import registry
from gendiag.report import render
from gendiag.report import sampling

DESCRIPTION = (
    "Scores of the Inception network's other outputs: sFID (the Frechet "
    "distance of its spatial features, lower is better), the Inception "
    "Score (higher is better; it ignores the real data), and FID / sFID "
    "against precomputed reference statistics such as the ADM evaluator's "
    "(the numbers diffusion papers report).")


@functools.partial(jax.jit, static_argnames=("num_resamples",))
def _stats_side_replicates(ref_stats, generated, key, *, num_resamples):
  """FID(reference stats, a resample of the generated rows), B replicates."""
  weights = ci_lib.resample_weights(key, generated.shape[0], num_resamples)
  return jax.lax.map(lambda w: frechet.fid_from_stats(
      ref_stats, frechet.weighted_stats(generated, w)).fid, weights)


def _use_delta(cfg, rows, dim):
  return cfg["interval"] == "delta" or (cfg["interval"] == "auto"
                                        and rows > dim)


def _sfid_entry(cfg, methods, real, real_stats, features, key,
                reference=None):
  """The sFID entry of `features` against `real` (families/fid.py's ci)."""
  if _use_delta(cfg, min(real.shape[0], features.shape[0]), real.shape[1]):
    res = frechet_delta.fid_standard_error(real, features)
    ci = ci_lib.standard_error_intervals([res.fid], [res.fid_se],
                                         level=cfg["level"],
                                         bounds=(-np.inf, np.inf))[0]
    methods.add("delta method (influence-function standard error)")
  else:
    res = frechet.fid_from_stats(real_stats, frechet.frechet_stats(features))
    reps = frechet.fid_term_replicates(
        real, features, key, num_resamples=int(cfg["num_resamples"]))
    ci = ci_lib.normal_intervals([res.fid], reps[:, :1], level=cfg["level"],
                                 bounds=(-np.inf, np.inf))[0]
    methods.add(f"bootstrap ({int(cfg['num_resamples'])} resamples)")
  return registry.entry(res.fid, ci=ci_lib.as_ci(ci), reference=reference,
                        mean_term=res.mean_term, trace_term=res.trace_term)


def _vs_stats_entry(cfg, methods, ref_stats, features, key):
  """FID of `features` against fixed statistics, the generated side's ci."""
  features = jnp.asarray(features, jnp.float32)
  res = frechet.fid_from_stats(ref_stats, frechet.frechet_stats(features))
  if _use_delta(cfg, features.shape[0], features.shape[1]):
    se = frechet_delta.fid_standard_error_from_stats(ref_stats, features)
    ci = ci_lib.standard_error_intervals([res.fid], [se], level=cfg["level"],
                                         bounds=(-np.inf, np.inf))[0]
    methods.add("delta method of the generated rows")
  else:
    reps = _stats_side_replicates(ref_stats, features, key,
                                  num_resamples=int(cfg["num_resamples"]))
    ci = ci_lib.normal_intervals([res.fid], reps[:, None], level=cfg["level"],
                                 bounds=(-np.inf, np.inf))[0]
    methods.add(f"bootstrap of the generated rows "
                f"({int(cfg['num_resamples'])} resamples)")
  return registry.entry(res.fid, ci=ci_lib.as_ci(ci),
                        mean_term=res.mean_term, trace_term=res.trace_term)


def _is_entry(cfg, logits, reference=None):
  """The Inception Score entry: torch-fidelity's value, ADM's in `adm`."""
  res = is_lib.inception_score(logits, splits=int(cfg["is_splits"]))
  adm = is_lib.inception_score(logits, convention="adm")
  gan = is_lib.inception_score(logits, convention="improved_gan",
                               splits=int(cfg["is_splits"]))
  ci = ci_lib.mean_interval(np.asarray(res.split_scores), level=cfg["level"])
  return registry.entry(res.mean, ci=ci, reference=reference, std=res.std,
                        adm=adm.mean, improved_gan=gan.mean,
                        num_splits=int(res.split_scores.shape[0]))


def _check_dims(what, features, stats):
  if features.shape[1] != stats.mean.shape[0]:
    raise ValueError(
        f"{what} has {features.shape[1]} features but the reference "
        f"statistics have {stats.mean.shape[0]}; they must come from the same "
        "extractor and output (e.g. Inception pool3 with an ADM batch's mu).")


def _sfid(inputs, cfg, key, out, methods):
  """sFID entries of the models with spatial features (with references)."""
  real = jnp.asarray(inputs.real_spatial, jnp.float32)
  real_stats = frechet.frechet_stats(real)
  split_view = dataclasses.replace(inputs, real=inputs.real_spatial,
                                   real_labels=None, train=None, test=None)
  refs = {}
  for i, (name, features) in enumerate(inputs.generated_spatial.items()):
    features = jnp.asarray(features, jnp.float32)
    _check_dims(f"model {name!r}'s spatial features", features, real_stats)
    size = features.shape[0]
    if size not in refs:
      sets = sampling.reference_sets(split_view, size)
      refs[size] = _sfid_entry(
          cfg, methods, jnp.asarray(sets.real, jnp.float32),
          frechet.frechet_stats(sets.real),
          jnp.asarray(sets.heldout, jnp.float32),
          jax.random.fold_in(key, 0x5F1D + size))
      out.notes.append(f"sfid reference (n = {size}): {sets.source}.")
    out.metrics.setdefault(name, {})["sfid"] = _sfid_entry(
        cfg, methods, real, real_stats, features, jax.random.fold_in(key, i),
        refs[size])


def _inception_scores(inputs, cfg, out):
  refs = {}
  for name, logits in inputs.generated_logits.items():
    size = len(logits)
    if inputs.real_logits is not None and size not in refs:
      real, = sampling.subsample_rows(inputs, "real logits", size,
                                      inputs.real_logits)
      refs[size] = _is_entry(cfg, real)
      out.notes.append(
          f"inception_score reference (n = {size}): {len(real)} real rows"
          + (" (a seeded random subsample)." if len(real) < len(
              inputs.real_logits) else "."))
    out.metrics.setdefault(name, {})["inception_score"] = _is_entry(
        cfg, logits, refs.get(size))


def image_scores_family(inputs: EvalInputs, key) -> registry.FamilyOutput:
  cfg = registry.family_config(inputs, "image_scores", num_resamples=50,
                               level=0.95, interval="auto", is_splits=10)
  if cfg["interval"] not in ("auto", "delta", "bootstrap"):
    raise ValueError(f"image_scores.interval must be 'auto', 'delta' or "
                     f"'bootstrap'; got {cfg['interval']!r}.")
  out = registry.FamilyOutput()
  ref = inputs.reference
  if not (inputs.has("spatial") or inputs.has("logits") or ref is not None):
    out.notes.append("skipped: needs spatial features, logits or reference "
                     "statistics (generated_spatial, generated_logits, "
                     "reference), which the inputs lack.")
    return out
  methods, ref_methods = set(), set()
  key_sfid, key_ref, key_ref_s = jax.random.split(key, 3)
  if inputs.has("spatial") and inputs.real_spatial is not None:
    _sfid(inputs, cfg, key_sfid, out, methods)
    dim = np.shape(inputs.real_spatial)[1]
    out.notes.append(f"sfid: Frechet distance of the spatial features ({dim}"
                     " per image); intervals: estimate -+ z * standard error, "
                     "from " + " and ".join(sorted(methods)) + ".")
  elif inputs.has("spatial"):
    out.notes.append("sfid: no real spatial features (real_spatial); only "
                     "sfid_vs_reference_stats can use the models' ones.")
  if inputs.has("logits"):
    _inception_scores(inputs, cfg, out)
    classes = {np.shape(v)[1] for v in inputs.generated_logits.values()}
    out.notes.append(
        "inception_score: torch-fidelity's convention (unbiased logits of "
        f"{'/'.join(str(c) for c in sorted(classes))} classes, "
        f"{int(cfg['is_splits'])} splits of a RandomState(2020) shuffle); "
        "interval: Student-t interval of the mean of the split scores; `adm` "
        "is the ADM evaluator's (consecutive chunks of 5000, mean only) and "
        "`improved_gan` improved-gan's / StyleGAN's (consecutive splits). "
        "The conventions are not interchangeable.")
  if ref is not None:
    for i, (name, features) in enumerate(inputs.generated.items()):
      _check_dims(f"model {name!r}", features, ref.features)
      out.metrics.setdefault(name, {})["fid_vs_reference_stats"] = (
          _vs_stats_entry(cfg, ref_methods, ref.features, features,
                          jax.random.fold_in(key_ref, i)))
      spatial = inputs.generated_spatial.get(name)
      if ref.spatial is not None and spatial is not None:
        _check_dims(f"model {name!r}'s spatial features", spatial,
                    ref.spatial)
        out.metrics[name]["sfid_vs_reference_stats"] = _vs_stats_entry(
            cfg, ref_methods, ref.spatial, spatial,
            jax.random.fold_in(key_ref_s, i))
    out.notes.append(
        f"*_vs_reference_stats: against the statistics of "
        f"{ref.source or 'the given reference'} (FID in "
        f"{inputs.feature_space}), taken as exact; intervals from the "
        "generated rows alone: " + " and ".join(sorted(ref_methods)) + ".")
  for need, field, metric in (("spatial", "generated_spatial", "sfid"),
                               ("logits", "generated_logits",
                                "inception_score")):
    lacking = [m for m in inputs.generated if m not in getattr(inputs, field)]
    if inputs.has(need) and lacking:
      out.notes.append(f"no {metric} for {', '.join(lacking)}: no {need} in "
                       f"`{field}`.")
  for metric, title in (("sfid", "sFID"),
                        ("inception_score", "Inception Score")):
    models = [m for m in inputs.generated if metric in out.metrics.get(m, {})]
    if not models:
      continue
    entries = [out.metrics[m][metric] for m in models]
    values = [e["value"] for e in entries]
    errors = [0.0 if e["ci"] is None else e["ci"][1] - e["value"]
              for e in entries]
    out.figures[f"{metric}.png"] = render.bar_chart(
        f"{title} (95% interval)", models, values, errors)
  return out


FAMILY = registry.Family("image_scores", image_scores_family,
                         description=DESCRIPTION)
