"""The precision-recall trade-off of flows trained with PR-divergences.

The CPU-scale version of Verine et al. (2023)'s result: training a flow to
minimise the PR-divergence D_lam (`ops.fdiv.PR`) moves it along the
precision-recall trade-off, precision rising and recall falling as lam
grows, while maximum likelihood (forward KL, mixture weight 1/lam^2 over
the D_lam) sits on the recall side and reverse KL (weight 1/lam) nearer
precision (Verine et al., the PR-divergence paper's mixture theorem).

`pr_tradeoff_sweep(train, test, key=...)` runs one sweep on one dataset:

  1. pretrain: one flow fitted by maximum likelihood on `train`
     (`pretrain` steps), shared by every run of a seed;
  2. fine-tune: from those parameters, one run per objective
     (`finetune` steps each): 'pr' at each lam of `lams` (the paper's
     adversarial form by default: a critic gives the ratio, the flow
     minimises D_lam on its own samples, written as `CentredPR` so that
     the Monte-Carlo loss is bounded), and the baselines
     'mle' (the same number of further likelihood steps, so every run has
     the same step count) and 'reverse_kl' (the same adversarial scheme,
     f = -log u);
  3. evaluate: `num_samples` flow samples against the held-out `test` rows
     with improved precision/recall (Kynkaanniemi et al. 2019, k = 3) and
     PRD (Sajjadi et al. 2018: the curve and max F_8 / F_1/8).

Pretraining then fine-tuning follows the paper's GAN experiments, which
fine-tune pretrained BigGANs; an adversarially trained flow started from the
identity map spends most of a CPU budget finding the modes at all.

The critic decides whether the sweep works: with the exact ratio of the
ring (its density is known) the adversarial form gives a monotone sweep,
while the paper's Pearson chi^2 critic (a plain MLP, trained from scratch
alongside the flow, 3 steps per flow step) lowered both precision and
recall at every lam. The default `ObjectiveSettings` and fine-tune config
therefore use, each measured on the ring (README):
  - a sin(W x + b) input layer (`critic_fourier_features`), which resolves
    the ratio around narrow modes that a plain MLP blurs;
  - a Jensen-Shannon (logistic) critic with a wide ratio clip: where the
    model puts mass the data lack, the chi^2 ratio T/2 + 1 sits at its
    clip and gives those samples no gradient, while the logistic critic's
    log-ratio keeps pointing towards the data;
  - a critic warm-up (`critic_warmup_steps` = 1000) against the pretrained
    flow before its first step, and 10 critic steps per flow step;
  - form 'by_side' (`ObjectiveSettings`): the weighted-MLE gradient for
    lam < 1, where the adversarial form's zero-mean noise cost the grid
    and the digits recall (grid lam = 0.1: recall 0.89 against the
    pretrained 0.99).
The digits' 8 PCA features have no narrow modes and only ~1,080 training
rows, which a critic memorises; there the experiment's config uses a plain
(64, 64) critic (no sin layer) with AdamW weight decay
(`TrainConfig.critic_weight_decay`), the usual ratio clip, and 1,000
fine-tune steps: the centred PR loss moves only the samples with
lam r < 1, a share that shrinks as lam grows, so after 400 steps lam = 10
had moved the flow less than lam = 3.

The sweep's objectives (`CentredPR`, `ObjectiveSettings`) are in
`gendiag.flows.sweep_objectives`; the experiment that runs it on the ring,
the grid and the digits and writes its tables and figures is
`gendiag.experiments.pr_tradeoff`.

References:
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023.
  Kynkaanniemi, Karras, Laine, Lehtinen, Aila. Improved Precision and
  Recall Metric for Assessing Generative Models. NeurIPS 2019.
  Sajjadi, Bachem, Lucic, Bousquet, Gelly. Assessing Generative Models via
  Precision and Recall. NeurIPS 2018.
"""

import math
import time
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.flows import evaluate as evaluate_lib
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import sweep_objectives
from gendiag.flows import trainer

_LABELS = {"mle": "MLE", "reverse_kl": "reverse KL"}


@_results.result(static=("dataset", "objectives", "labels", "k",
                         "num_seeds"))
class TradeoffResult:
  """One dataset's sweep: R runs (PR at each lam, then the baselines).

  Attributes:
    lams: (R,) the PR trade-off of each run; NaN for the baselines.
    precision: (R, S) improved precision (k-NN, k = `k`) of each run and seed.
    recall: (R, S) improved recall.
    prd_precision: (R, A) the PRD curve's precision, averaged over seeds.
    prd_recall: (R, A) the PRD curve's recall, averaged over seeds.
    prd_f_beta: (R, S) PRD max F_8 (recall-like).
    prd_f_inv_beta: (R, S) PRD max F_1/8 (precision-like).
    final_loss: (R, S) the last logged training loss of each fine-tune.
    critic_gap: (R, S) mean log r_hat on the training rows minus on the
      held-out rows, with the fine-tune's final critic (NaN for runs
      without one). Both are real rows, so a critic that generalises gives
      ~0; a large gap means it memorised the training rows, and its ratio
      pulls samples onto them rather than towards the data's density.
    samples: (R, n, d) the first seed's samples of each run.
    pretrained_precision: (S,) improved precision of the MLE-pretrained
      flow (every run's starting point).
    pretrained_recall: (S,) its improved recall.
    dataset: the dataset's name.
    objectives: (R,) 'pr', 'mle' or 'reverse_kl'.
    labels: (R,) display names ('PR lam=0.1', 'MLE', ...).
    k: the k of improved precision/recall.
    num_seeds: S.
  """
  lams: np.ndarray  # float64: the config's lams to the last digit
  precision: jax.Array
  recall: jax.Array
  prd_precision: jax.Array
  prd_recall: jax.Array
  prd_f_beta: jax.Array
  prd_f_inv_beta: jax.Array
  final_loss: jax.Array
  critic_gap: jax.Array
  samples: jax.Array
  pretrained_precision: jax.Array
  pretrained_recall: jax.Array
  dataset: str = ""
  objectives: Tuple[str, ...] = ()
  labels: Tuple[str, ...] = ()
  k: int = 3
  num_seeds: int = 1

  def rows(self) -> list:
    """One dict per run: objective, lam, mean/std of every per-seed metric.

    A metric that is NaN for every seed (critic_gap without a critic) is
    None, so the rows stay valid JSON.
    """
    out = []
    for i, (name, label) in enumerate(zip(self.objectives, self.labels)):
      lam = float(self.lams[i])
      row = {"objective": name, "label": label,
             "lam": None if math.isnan(lam) else lam}
      for field in ("precision", "recall", "prd_f_beta", "prd_f_inv_beta",
                    "final_loss", "critic_gap"):
        values = np.asarray(getattr(self, field)[i], np.float64)
        if np.isnan(values).all():  # e.g. critic_gap of a run without one
          row.update({field: None, field + "_std": None,
                      field + "_per_seed": [None] * len(values)})
          continue
        row[field] = float(values.mean())
        row[field + "_std"] = float(values.std()) if len(values) > 1 else None
        row[field + "_per_seed"] = values.tolist()
      out.append(row)
    return out


def _label(name: str, lam: Optional[float]) -> str:
  return f"PR lam={lam:g}" if name == "pr" else _LABELS[name]


def _check_lams(lams) -> Tuple[float, ...]:
  lams = tuple(float(v) for v in lams)
  if any(not (v > 0 and math.isfinite(v)) for v in lams):
    raise ValueError(f"`lams` must be finite and > 0; got {lams}.")
  return lams

def critic_gap(objective: losses.Objective, flow: models.Flow, critic_params,
               train, test) -> float:
  """mean log r_hat(train rows) - mean log r_hat(held-out rows); NaN if none.

  Both sets are drawn from the data, so E[log r] is the same on each
  (KL(P || Q) >= 0); a critic that memorised its training rows puts a much
  higher ratio on them than on fresh real rows (measured on digits, 8-d,
  ~1,080 rows, after 3,000 critic steps against the pretrained flow:
  1.67 vs -1.55 for a (128, 128) MLP, 0.58 vs 0.23 for (64, 64) with
  weight decay 0.2).
  """
  if not objective.uses_critic:
    return float("nan")
  log_r = [float(jnp.mean(jnp.log(objective.critic.ratio(
      critic_params, flow, jnp.asarray(rows))))) for rows in (train, test)]
  return log_r[0] - log_r[1]


def pr_tradeoff_sweep(
    train: jax.Array, test: jax.Array, *, key: jax.Array,
    lams: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0),
    baselines: Sequence[str] = sweep_objectives.BASELINES,
    flow: Optional[models.Flow] = None,
    pretrain: trainer.TrainConfig = trainer.TrainConfig(num_steps=1500),
    finetune: trainer.TrainConfig = trainer.TrainConfig(
        num_steps=400, learning_rate=2e-4, critic_learning_rate=3e-3,
        critic_steps=10, critic_warmup_steps=1000),
    objective: sweep_objectives.ObjectiveSettings = (
        sweep_objectives.ObjectiveSettings()),
    num_seeds: int = 1, num_samples: Optional[int] = None, k: int = 3,
    prd_clusters: int = 20, prd_runs: int = 10, num_angles: int = 201,
    dataset: str = "") -> TradeoffResult:
  """Trains one flow per objective and scores it on held-out real data.

  For each seed s (keys split from `key`): the flow is pretrained by
  maximum likelihood on `train`; each run r then fine-tunes it with its own
  objective, from the pretrained parameters,

    'pr' at lam:   min_theta D_lam(P || Q_theta),
                   f_lam(u) = max(lam u, 1) - max(lam, 1)
    'mle':         min_theta -E_P[log q_theta]      (forward KL)
    'reverse_kl':  min_theta D_f(P || Q_theta),     f(u) = -log u

  and `num_samples` of its samples are scored against `test`
  (`gendiag.flows.evaluate`). Precision should rise and recall fall as lam
  grows.

  Args:
    train: (n, d) real rows the flows are trained on.
    test: (m, d) held-out real rows the samples are scored against.
    key: PRNG key: flow initialisation, minibatches, flow and critic
      samples, the evaluation samples and PRD's k-means.
    lams: the PR trade-offs swept (each > 0).
    baselines: subset of ('mle', 'reverse_kl').
    flow: the model (its data normaliser is set from `train`); default a
      4-layer rational-quadratic spline flow.
    pretrain: TrainConfig of the shared maximum-likelihood fit.
    finetune: TrainConfig of every run's fine-tune.
    objective: how the critic-based objectives are built.
    num_seeds: independent repetitions (different keys).
    num_samples: samples per run; default (and required for PRD) m.
    k: improved precision/recall neighbourhood size.
    prd_clusters, prd_runs, num_angles: PRD settings (`gendiag.flows.evaluate`).
    dataset: a name kept in the result.

  Returns:
    TradeoffResult.

  References:
    Verine, Negrevergne, Pydi, Chevaleyre. NeurIPS 2023 (module docstring).
  """
  _checks.check_features(train, "train", min_rows=2)
  _checks.check_pair(test, test, min_rows=max(k + 2, prd_clusters))
  if np.shape(train)[1] != np.shape(test)[1]:
    raise ValueError(f"`train` has {np.shape(train)[1]} features but `test` "
                     f"{np.shape(test)[1]}; they must match.")
  lams = _check_lams(lams)
  baselines = tuple(baselines)
  unknown = set(baselines) - set(sweep_objectives.BASELINES)
  if unknown:
    raise ValueError(f"unknown baselines {sorted(unknown)}; choose from "
                     f"{sweep_objectives.BASELINES}.")
  if not lams and not baselines:
    raise ValueError("nothing to sweep: give `lams` or `baselines`.")
  _checks.check_positive_int(num_seeds, "num_seeds")
  num_samples = np.shape(test)[0] if num_samples is None else num_samples
  if num_samples != np.shape(test)[0]:
    raise ValueError(f"`num_samples` ({num_samples}) must equal the number "
                     f"of test rows ({np.shape(test)[0]}): PRD needs "
                     "balanced sets.")
  train = np.asarray(train, np.float32)
  test = np.asarray(test, np.float32)
  dim = train.shape[1]
  flow = models.Flow(dim=dim) if flow is None else flow
  flow = flow.normalized_for(train)
  runs = [("pr", lam) for lam in lams] + [(b, None) for b in baselines]
  # Build every objective first so a bad setting fails before training.
  objectives = [objective.make(name, lam) for name, lam in runs]

  per_run = [[] for _ in runs]
  pretrained = []
  samples0 = [None] * len(runs)
  for s, key_seed in enumerate(jax.random.split(key, num_seeds)):
    key_pre, key_runs, key_eval, key_pre_eval = jax.random.split(key_seed, 4)
    t0 = time.perf_counter()
    pre = trainer.train(flow, losses.make_objective("mle"), train,
                        key=key_pre, config=pretrain)
    pre_samples = flow.sample(pre.params, key_pre_eval, num_samples)
    pre_eval = evaluate_lib.evaluate(
        test, pre_samples, key=key_eval, k=k, prd_clusters=prd_clusters,
        prd_runs=prd_runs, num_angles=num_angles)
    pretrained.append(pre_eval)
    logging.info("%s seed %d: MLE pretraining (%d steps, %.0f s): "
                 "precision %.3f recall %.3f", dataset, s, pretrain.num_steps,
                 time.perf_counter() - t0, pre_eval["precision"],
                 pre_eval["recall"])
    for r, ((name, lam), obj) in enumerate(zip(runs, objectives)):
      t0 = time.perf_counter()
      fit = trainer.train(flow, obj, train, key=jax.random.fold_in(key_runs, r),
                          config=finetune, init_params=pre.params)
      x = flow.sample(fit.params, jax.random.fold_in(key_eval, r),
                      num_samples)
      if not np.all(np.isfinite(np.asarray(x))):
        raise FloatingPointError(
            f"{dataset} {_label(name, lam)} seed {s}: the trained flow "
            "produced NaN/inf samples; lower finetune.learning_rate or "
            "narrow the critic's ratio_range.")
      scores = evaluate_lib.evaluate(
          test, x, key=key_eval, k=k, prd_clusters=prd_clusters,
          prd_runs=prd_runs, num_angles=num_angles)
      scores["final_loss"] = float(fit.metrics.get("loss", np.nan))
      scores["critic_gap"] = critic_gap(obj, flow, fit.critic_params, train,
                                        test)
      per_run[r].append(scores)
      if s == 0:
        samples0[r] = np.asarray(x)
      logging.info("%s seed %d %-14s precision %.3f recall %.3f "
                   "(PRD F8 %.3f F1/8 %.3f; %d steps, %.0f s)", dataset, s,
                   _label(name, lam), scores["precision"], scores["recall"],
                   scores["prd_f_beta"], scores["prd_f_inv_beta"],
                   finetune.num_steps, time.perf_counter() - t0)

  def stack(field):
    return jnp.asarray([[sc[field] for sc in run] for run in per_run],
                       jnp.float32)

  def curve(field):
    return jnp.asarray([np.mean([sc[field] for sc in run], axis=0)
                        for run in per_run], jnp.float32)

  return TradeoffResult(
      lams=np.asarray([np.nan if lam is None else lam for _, lam in runs],
                      np.float64),
      precision=stack("precision"), recall=stack("recall"),
      prd_precision=curve("prd_precision"), prd_recall=curve("prd_recall"),
      prd_f_beta=stack("prd_f_beta"), prd_f_inv_beta=stack("prd_f_inv_beta"),
      final_loss=stack("final_loss"), critic_gap=stack("critic_gap"),
      samples=jnp.asarray(np.stack(samples0)),
      pretrained_precision=jnp.asarray([p["precision"] for p in pretrained]),
      pretrained_recall=jnp.asarray([p["recall"] for p in pretrained]),
      dataset=dataset, objectives=tuple(n for n, _ in runs),
      labels=tuple(_label(n, lam) for n, lam in runs), k=int(k),
      num_seeds=int(num_seeds))


def is_monotone(result: TradeoffResult, num_sd: float = 2.0
                ) -> Dict[str, bool]:
  """Whether mean precision rises and mean recall falls along lam (PR runs).

  Improved precision and recall are shares of n samples (n = the samples'
  rows, as many as the test rows), so two runs' values differ by sampling
  noise of standard error sqrt(a (1 - a) / n + b (1 - b) / n), divided by
  sqrt(num_seeds) for seed means. Near the ends of the trade-off the true
  steps are often smaller than that (at small lam the maximum-likelihood
  flow's recall is already ~0.98), so strict monotonicity of one seed is
  partly luck; the '_within_noise' fields only count a step against the
  trend when it exceeds `num_sd` standard errors, and '_end_to_end' asks
  whether the largest lam beats the smallest by more than that.

  Returns:
    {'precision_rises', 'recall_falls' (non-strict, over the PR runs sorted
     by lam), 'precision_rises_within_noise', 'recall_falls_within_noise',
     'precision_rises_end_to_end', 'recall_falls_end_to_end',
     'mle_on_recall_side' (the MLE run's recall >= every PR run's with
     lam > 1; False without an MLE run or a lam > 1)}: bools.
  """
  lams = np.asarray(result.lams)
  is_pr = np.asarray([o == "pr" for o in result.objectives])
  order = np.argsort(lams[is_pr])
  prec = np.asarray(result.precision).mean(axis=1)[is_pr][order]
  rec = np.asarray(result.recall).mean(axis=1)[is_pr][order]
  n = np.shape(result.samples)[1] * result.num_seeds

  def tolerance(a, b):
    return num_sd * np.sqrt((a * (1 - a) + b * (1 - b)) / n)

  out = {"precision_rises": bool(np.all(np.diff(prec) >= 0)),
         "recall_falls": bool(np.all(np.diff(rec) <= 0))}
  if prec.size:
    out.update(
        precision_rises_within_noise=bool(np.all(
            np.diff(prec) >= -tolerance(prec[:-1], prec[1:]))),
        recall_falls_within_noise=bool(np.all(
            np.diff(rec) <= tolerance(rec[:-1], rec[1:]))),
        precision_rises_end_to_end=bool(
            prec[-1] - prec[0] > tolerance(prec[0], prec[-1])),
        recall_falls_end_to_end=bool(
            rec[0] - rec[-1] > tolerance(rec[0], rec[-1])))
  out["mle_on_recall_side"] = False
  if "mle" in result.objectives:
    mle = result.objectives.index("mle")
    mle_rec = float(np.asarray(result.recall)[mle].mean())
    high = lams[is_pr][order] > 1
    if high.any():
      out["mle_on_recall_side"] = bool(mle_rec >= rec[high].max())
  return out
