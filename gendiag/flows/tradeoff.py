"""The precision-recall trade-off of flows trained with PR-divergences.

The CPU-scale version of Verine et al. (2023)'s result: training a flow to
minimise the PR-divergence D_lam (`ops.fdiv.PR`) moves it along the
precision-recall trade-off, precision rising and recall falling as lam
grows, while maximum likelihood (forward KL, mixture weight 1/lam^2 over
the D_lam) sits on the recall side and reverse KL (weight 1/lam) nearer
precision (notes/precision_recall.md, the mixture theorem).

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

`experiment(config, workdir)` runs the sweep on each configured dataset
('ring': 8 Gaussians on a circle, 'grid': 25 on a square grid,
`gendiag.data.synthetic`; 'digits': scikit-learn's digits embedded by the
shipped CNN (`gendiag.features`, as the main job does), reduced by PCA to
`pca_dim` dimensions fitted on the flow's training rows, because k-NN
precision/recall on ~700 held-out rows is too coarse in 64-d and a flow on
~1,000 rows of 64-d features overfits) and writes `tradeoff.json`,
`tradeoff.md`, `tradeoff.png` (recall, precision per run) and `samples.png`
(samples over the test rows, first two coordinates).

References:
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023.
  Kynkaanniemi, Karras, Laine, Lehtinen, Aila. Improved Precision and
  Recall Metric for Assessing Generative Models. NeurIPS 2019.
  Sajjadi, Bachem, Lucic, Bousquet, Gelly. Assessing Generative Models via
  Precision and Recall. NeurIPS 2018.
"""

import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import time
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag import features as features_lib
from gendiag.data import digits as digits_lib
from gendiag.data import synthetic
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import trainer
from gendiag.metrics import prd as prd_lib
from gendiag.metrics import precision_recall as pr_lib
from gendiag.ops import fdiv
from gendiag.ops import quantize

DATASETS = ("ring", "grid", "digits")
BASELINES = ("mle", "reverse_kl")
_LABELS = {"mle": "MLE", "reverse_kl": "reverse KL"}


@functools.partial(jax.tree_util.register_dataclass, data_fields=["lam"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class CentredPR(fdiv.FDivergence):
  """The PR-divergence D_lam with the generator g(u) = f_lam(u) - lam (u - 1).

    g(u) = (1 - lam u)_+ - (1 - lam)_+,   f_lam(u) = max(lam u, 1) - max(lam, 1)

  f and f + c (u - 1) define the same divergence (E_Q[r - 1] = 0), so
  D_g = D_lam exactly; but as a Monte-Carlo loss on the flow's own samples,
  E_Q[f_lam(r)] carries the term lam E_Q[r], constant in expectation and
  of huge variance (gradient norms ~1e5 measured on the ring at lam = 10,
  which wrecked the flow), while E_Q[g(r)] = E_Q[(1 - lam r)_+] + const is
  bounded and moves only the samples where lam r < 1. Minimising it
  maximises E_Q[min(lam r, 1)], the fake-sample term of Verine et al.'s
  `PRLoss` (the generator side of their official code). (The mirror image
  for lam < 1, (lam u - 1)_+, which moves only samples with lam r > 1, was
  measured on the ring and collapsed the flow, precision 0.006 at
  lam = 0.1: model samples rarely land where the model under-covers the
  data, so that estimate rests on a few samples.)

  Attributes:
    lam: the trade-off lam > 0.
  """
  lam: float = 1.0
  name = "pr_centred"

  @property
  def f_at_zero(self):
    return 1.0 - jnp.maximum(1.0 - self.lam, 0.0)

  slope_at_infinity = 0.0

  @property
  def pr_atoms(self):
    return ((self.lam, 1.0),)

  def f(self, u):
    return (jnp.maximum(1.0 - self.lam * u, 0.0)
            - jnp.maximum(1.0 - self.lam, 0.0))

  def f_prime(self, u):
    return jnp.where(self.lam * u < 1.0, -self.lam, 0.0)

  def f_double_prime(self, u):
    return jnp.zeros_like(u)


@dataclasses.dataclass(frozen=True)
class ObjectiveSettings:
  """How the critic-based objectives ('pr', 'reverse_kl') are built.

  Attributes:
    form: 'adversarial' (the paper's), 'weighted_mle' or 'score_function'
      (`losses.make_objective`), or 'by_side': 'weighted_mle' for the PR
      runs with lam < 1 and 'adversarial' otherwise. Both are the exact
      gradient of D_lam, but each has per-sample terms only where the
      model is wrong on its own side: the weighted-MLE weights
      1[lam r > 1] / r vanish except on data the model under-covers (the
      recall side, lam < 1), the centred adversarial loss except on model
      samples with lam r < 1 (excess model mass, the precision side); the
      other form's terms there are zero-mean noise, which Adam turns into
      drift.
    auxiliary: the critic's divergence ('pearson' as in the paper).
    critic_hidden_sizes: critic MLP widths.
    ratio_range: clip of the ratio estimate.
    critic_fourier_features, critic_fourier_scale: the critic's sin input
      layer (`discriminator.Discriminator`; 0 features for none).
    centred: train the adversarial PR runs on `CentredPR` (the same
      divergence with a bounded loss); False uses f_lam itself.
  """
  form: str = "adversarial"
  auxiliary: str = "jensen_shannon"
  critic_hidden_sizes: Tuple[int, ...] = (128, 128)
  ratio_range: Tuple[float, float] = (1e-8, 1e8)
  critic_fourier_features: int = 128
  critic_fourier_scale: float = 5.0
  centred: bool = True

  def __post_init__(self):
    forms = losses.FORMS + ("by_side",)
    if self.form not in forms:
      raise ValueError(f"unknown objective form {self.form!r}; choose from "
                       f"{forms}.")

  @classmethod
  def from_dict(cls, values) -> "ObjectiveSettings":
    """From a config section (lists, e.g. from JSON, become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                  for k, v in dict(values).items()})

  def make(self, name: str, lam: Optional[float] = None
           ) -> losses.Objective:
    """The objective of run `name` ('pr', 'mle' or 'reverse_kl')."""
    if name == "mle":
      return losses.make_objective("mle")
    if name not in ("pr", "reverse_kl"):
      raise ValueError(f"unknown sweep objective {name!r}; choose 'pr' or "
                       f"one of {BASELINES}.")
    form = self.form
    if form == "by_side":
      form = "weighted_mle" if name == "pr" and lam < 1 else "adversarial"
    built = losses.make_objective(
        "fdiv", divergence=name, lam=lam if name == "pr" else None,
        form=form, auxiliary=self.auxiliary,
        critic_hidden_sizes=tuple(self.critic_hidden_sizes),
        ratio_range=tuple(self.ratio_range),
        critic_fourier_features=self.critic_fourier_features,
        critic_fourier_scale=self.critic_fourier_scale)
    if name == "pr" and form == "adversarial" and self.centred:
      # Same divergence, bounded Monte-Carlo loss (see CentredPR).
      built = losses.AdversarialFDivergence(CentredPR(lam=float(lam)),
                                            built.critic)
    return built


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


def evaluate(test, samples, *, key: jax.Array, k: int = 3,
             prd_clusters: int = 20, prd_runs: int = 10,
             num_angles: int = 201) -> Dict[str, np.ndarray]:
  """Improved precision/recall and PRD of `samples` against `test`.

  Args:
    test: (N, d) held-out real rows.
    samples: (N, d) generated rows (as many as `test`: PRD clusters the
      union and needs balanced sets).
    key: PRNG key of PRD's k-means runs.
    k: neighbourhood size of improved precision/recall.
    prd_clusters: PRD's k-means clusters.
    prd_runs: PRD's independent clusterings.
    num_angles: points on the PRD curve.

  Returns:
    Dict with 'precision', 'recall', 'prd_f_beta', 'prd_f_inv_beta'
    (floats) and 'prd_precision', 'prd_recall' ((num_angles,) arrays).
  """
  ipr = pr_lib.improved_precision_recall(test, samples, k=k)
  curve = prd_lib.prd(test, samples, key=key, num_clusters=prd_clusters,
                      num_runs=prd_runs, num_angles=num_angles)
  return {"precision": float(ipr.precision), "recall": float(ipr.recall),
          "prd_f_beta": float(curve.f_beta),
          "prd_f_inv_beta": float(curve.f_inv_beta),
          "prd_precision": np.asarray(curve.precision),
          "prd_recall": np.asarray(curve.recall)}


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
    baselines: Sequence[str] = BASELINES,
    flow: Optional[models.Flow] = None,
    pretrain: trainer.TrainConfig = trainer.TrainConfig(num_steps=1500),
    finetune: trainer.TrainConfig = trainer.TrainConfig(
        num_steps=400, learning_rate=2e-4, critic_learning_rate=3e-3,
        critic_steps=10, critic_warmup_steps=1000),
    objective: ObjectiveSettings = ObjectiveSettings(),
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
  (`evaluate`). Precision should rise and recall fall as lam grows.

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
    prd_clusters, prd_runs, num_angles: PRD settings (`evaluate`).
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
  unknown = set(baselines) - set(BASELINES)
  if unknown:
    raise ValueError(f"unknown baselines {sorted(unknown)}; choose from "
                     f"{BASELINES}.")
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
    pre_eval = evaluate(test, pre_samples, key=key_eval, k=k,
                        prd_clusters=prd_clusters, prd_runs=prd_runs,
                        num_angles=num_angles)
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
      scores = evaluate(test, x, key=key_eval, k=k,
                        prd_clusters=prd_clusters, prd_runs=prd_runs,
                        num_angles=num_angles)
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


# --------------------------------------------------------------------------
# Data.


def load_dataset(name: str, *, key: jax.Array, num_train: int = 4000,
                 num_test: int = 2000, pca_dim: int = 8,
                 extractor: str = "digits_net",
                 test_fraction: float = 0.4
                 ) -> Tuple[np.ndarray, np.ndarray, dict]:
  """(train, test, info) rows of a sweep dataset, float32 numpy.

  'ring' and 'grid' are fresh draws (`num_train`, `num_test`) of
  `gendiag.data.synthetic`'s mixtures. 'digits' are scikit-learn's 1,797
  digits embedded by `extractor` (the shipped CNN, as the main job does),
  split `test_fraction` held out (stratified by class and by the feature
  network's own train/test membership, as the main job does), then projected
  on the first `pca_dim` principal components of the train rows
  (`ops.quantize.pca_fit`); `num_train`/`num_test` are ignored.

  Args:
    name: one of DATASETS.
    key: PRNG key of the draws or the split.
    num_train, num_test: rows of the synthetic sets.
    pca_dim: digits' PCA dimension (0 keeps the full features).
    extractor: digits' feature extractor (a `gendiag.features` name).
    test_fraction: digits' held-out share.

  Returns:
    (train, test, info) with info = {'dim', 'num_train', 'num_test'} (and
    'explained_variance' for digits with PCA).
  """
  if name in ("ring", "grid"):
    key_train, key_test = jax.random.split(key)
    sample = synthetic.ring if name == "ring" else synthetic.grid
    train = np.asarray(sample(key_train, num_train)[0], np.float32)
    test = np.asarray(sample(key_test, num_test)[0], np.float32)
    info = {}
  elif name == "digits":
    if not 0 < test_fraction < 1:
      raise ValueError(f"`test_fraction` must be in (0, 1); got "
                       f"{test_fraction}.")
    data = digits_lib.load()
    _, net_test = digits_lib.train_test()
    strata = 2 * data.labels.astype(np.int64)
    strata[net_test] += 1
    parts = digits_lib.split(strata, {"train": 1 - test_fraction,
                                      "test": test_fraction}, key=key)
    feats = features_lib.embed(extractor, np.asarray(data.images),
                               name="digits")
    train, test = feats[parts["train"]], feats[parts["test"]]
    info = {}
    if pca_dim:
      pca = quantize.pca_fit(train, num_components=pca_dim)
      train = np.asarray(quantize.pca_transform(pca, train), np.float32)
      test = np.asarray(quantize.pca_transform(pca, test), np.float32)
      info["explained_variance"] = float(
          np.sum(np.asarray(pca.explained_variance_ratio)))
  else:
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}.")
  info.update(dim=int(train.shape[1]), num_train=int(train.shape[0]),
              num_test=int(test.shape[0]))
  return train, test, info


# --------------------------------------------------------------------------
# Figures and tables.


def _fmt(mean, std):
  if mean is None:
    return "—"
  if std is None:
    return f"{mean:.3f}"
  return f"{mean:.3f} ± {std:.3f}"


def markdown_table(result: TradeoffResult) -> str:
  """A markdown table: objective, lam, precision, recall, PRD F_8, F_1/8
  and the critic's train / held-out gap (`critic_gap`).

  With several seeds each cell is mean ± std over seeds.
  """
  lines = [
      f"| objective | lam | precision (k={result.k}) | recall (k={result.k}) "
      "| PRD F_8 | PRD F_1/8 | critic gap |",
      "| --- | --- | --- | --- | --- | --- | --- |"]
  for row in result.rows():
    lam = "" if row["lam"] is None else f"{row['lam']:g}"
    name = "PR" if row["objective"] == "pr" else row["label"]
    lines.append(
        f"| {name} | {lam} | {_fmt(row['precision'], row['precision_std'])} "
        f"| {_fmt(row['recall'], row['recall_std'])} "
        f"| {_fmt(row['prd_f_beta'], row['prd_f_beta_std'])} "
        f"| {_fmt(row['prd_f_inv_beta'], row['prd_f_inv_beta_std'])} "
        f"| {_fmt(row['critic_gap'], row['critic_gap_std'])} |")
  pre_p = np.asarray(result.pretrained_precision)
  pre_r = np.asarray(result.pretrained_recall)
  lines.append(f"| (MLE pretrained start) | | {pre_p.mean():.3f} "
               f"| {pre_r.mean():.3f} | | | |")
  return "\n".join(lines)


def _colors(result):
  """A viridis colour per PR run (by log lam), fixed ones for baselines."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  lams = np.asarray(result.lams)
  pr = lams[~np.isnan(lams)]
  lo, hi = (np.log(pr.min()), np.log(pr.max())) if len(pr) else (0.0, 1.0)
  cmap = colormaps["viridis"]
  fixed = {"mle": "tab:red", "reverse_kl": "tab:orange"}
  out = []
  for name, lam in zip(result.objectives, lams):
    if name == "pr":
      t = 0.5 if hi == lo else (np.log(lam) - lo) / (hi - lo)
      out.append(cmap(0.9 * t))
    else:
      out.append(fixed[name])
  return out


def plot_tradeoff(result: TradeoffResult, ax, *, curves: bool = False):
  """Draws each run's (recall, precision) on `ax` (mean, std bars).

  Args:
    result: a TradeoffResult.
    ax: a matplotlib Axes.
    curves: also draw each run's PRD curve (thin lines).
  """
  colors = _colors(result)
  for i, (name, label) in enumerate(zip(result.objectives, result.labels)):
    p = np.asarray(result.precision[i])
    r = np.asarray(result.recall[i])
    marker = "o" if name == "pr" else ("s" if name == "mle" else "D")
    ax.errorbar(r.mean(), p.mean(),
                xerr=r.std() if len(r) > 1 else None,
                yerr=p.std() if len(p) > 1 else None, fmt=marker,
                color=colors[i], label=label, markersize=7, capsize=2)
    if curves:
      ax.plot(np.asarray(result.prd_recall[i]),
              np.asarray(result.prd_precision[i]), color=colors[i], lw=0.8,
              alpha=0.6)
  ax.plot(np.asarray(result.pretrained_recall).mean(),
          np.asarray(result.pretrained_precision).mean(), "x", color="grey",
          label="MLE start")
  ax.set_xlabel(f"recall (improved, k={result.k})")
  ax.set_ylabel(f"precision (improved, k={result.k})")
  ax.set_title(result.dataset)
  ax.grid(alpha=0.3)


def tradeoff_figure(results: Sequence[TradeoffResult]) -> Figure:
  """One panel per dataset: the achieved (recall, precision) of every run."""
  fig = Figure(figsize=(4.2 * len(results), 4.0), layout="constrained")
  axes = fig.subplots(1, len(results), squeeze=False)[0]
  for ax, result in zip(axes, results):
    plot_tradeoff(result, ax)
  axes[-1].legend(fontsize=7, loc="best")
  return fig


def samples_figure(results: Sequence[TradeoffResult],
                   tests: Sequence[np.ndarray], *,
                   max_points: int = 1000) -> Figure:
  """A grid of scatter plots: a row per dataset, a column per run.

  Each panel shows the run's first-seed samples (coloured) over the test
  rows (grey), first two coordinates (the PCA's leading two for digits).
  """
  num_runs = max(len(r.objectives) for r in results)
  fig = Figure(figsize=(2.2 * num_runs, 2.3 * len(results)),
               layout="constrained")
  axes = fig.subplots(len(results), num_runs, squeeze=False)
  for row, (result, test) in zip(axes, zip(results, tests)):
    test = np.asarray(test)[:max_points]
    lo = np.percentile(test[:, :2], 0.5, axis=0)
    hi = np.percentile(test[:, :2], 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    colors = _colors(result)
    for j, ax in enumerate(row):
      ax.set_xticks([])
      ax.set_yticks([])
      if j >= len(result.objectives):
        ax.axis("off")
        continue
      x = np.asarray(result.samples[j])[:max_points]
      ax.scatter(test[:, 0], test[:, 1], s=1, color="0.75")
      ax.scatter(x[:, 0], x[:, 1], s=1, color=colors[j])
      ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
      ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
      ax.set_title(f"{result.labels[j]}\nP {float(result.precision[j, 0]):.2f}"
                   f" R {float(result.recall[j, 0]):.2f}", fontsize=8)
      if j == 0:
        ax.set_ylabel(result.dataset)
  return fig


# --------------------------------------------------------------------------
# The experiment (experiments/pr_tradeoff.py).


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def _merged(config, name):
  """The config's per-dataset settings: sections and num_seeds, overridden."""
  cfg = {"flow": config.flow.to_dict(), "pretrain": config.pretrain.to_dict(),
         "finetune": config.finetune.to_dict(),
         "objective": config.objective.to_dict(),
         "num_seeds": int(config.num_seeds)}
  overrides = config.get("overrides", {})
  for section, values in dict(overrides.get(name, {})).items():
    if section not in cfg:
      raise ValueError(f"overrides.{name}.{section}: unknown; choose from "
                       f"{sorted(cfg)}.")
    cfg[section] = (int(values) if section == "num_seeds"
                    else {**cfg[section], **dict(values)})
  return cfg


def experiment(config, workdir: str) -> dict:
  """Runs the sweep on every `config.datasets` entry; writes the results.

  Files in `workdir`: tradeoff.json ({'meta', 'datasets': {name: {'info',
  'runs': [row...], 'monotone'}}}), tradeoff.md (a table per dataset),
  tradeoff.png and samples.png, and metrics.jsonl (a line per dataset as
  it finishes).

  Returns:
    The JSON dict written to tradeoff.json.
  """
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(config.seed)
  results, tests, out = [], [], {}
  start = time.perf_counter()
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as log:
    for i, name in enumerate(config.datasets):
      key_data, key_sweep = jax.random.split(jax.random.fold_in(key, i))
      train, test, info = load_dataset(
          name, key=key_data, num_train=config.data.num_train,
          num_test=config.data.num_test, pca_dim=config.data.pca_dim,
          extractor=config.data.extractor,
          test_fraction=config.data.test_fraction)
      cfg = _merged(config, name)
      flow_cfg = dict(cfg["flow"])
      flow_cfg["hidden_sizes"] = tuple(flow_cfg["hidden_sizes"])
      settings = ObjectiveSettings.from_dict(cfg["objective"])
      logging.info("pr_tradeoff: dataset %s (%d/%d): %s", name, i + 1,
                   len(config.datasets), info)
      result = pr_tradeoff_sweep(
          train, test, key=key_sweep, lams=tuple(config.lams),
          baselines=tuple(config.baselines),
          flow=models.Flow(dim=info["dim"], **flow_cfg),
          pretrain=trainer.TrainConfig(**cfg["pretrain"]),
          finetune=trainer.TrainConfig(**cfg["finetune"]),
          objective=settings, num_seeds=cfg["num_seeds"],
          k=config.eval.k, prd_clusters=config.eval.prd_clusters,
          prd_runs=config.eval.prd_runs, dataset=name)
      results.append(result)
      tests.append(test)
      out[name] = {"info": info, "settings": cfg, "runs": result.rows(),
                   "pretrained": {
                       "precision": np.asarray(
                           result.pretrained_precision).tolist(),
                       "recall": np.asarray(
                           result.pretrained_recall).tolist()},
                   "monotone": is_monotone(result)}
      log.write(json.dumps({"dataset": name, **out[name]}) + "\n")
      log.flush()
      logging.info("pr_tradeoff: %s done (%.0f s so far); monotone: %s", name,
                   time.perf_counter() - start, out[name]["monotone"])
  meta = {"config": json.loads(config.to_json()),
          "seconds": time.perf_counter() - start,
          "versions": {p: _version(p) for p in ("jax", "flax", "distrax",
                                                "optax")}}
  payload = {"meta": meta, "datasets": out}
  with open(os.path.join(workdir, "tradeoff.json"), "w") as f:
    json.dump(payload, f, indent=1)
  with open(os.path.join(workdir, "tradeoff.md"), "w") as f:
    f.write(_markdown(results, out))
  tradeoff_figure(results).savefig(os.path.join(workdir, "tradeoff.png"),
                                   dpi=110)
  samples_figure(results, tests).savefig(
      os.path.join(workdir, "samples.png"), dpi=110)
  logging.info("pr_tradeoff: wrote %s (%.0f s)", workdir, meta["seconds"])
  return payload


def _markdown(results, out) -> str:
  parts = ["# Precision-recall trade-off of PR-divergence flows\n",
           "Flows pretrained by maximum likelihood, then fine-tuned with each "
           "objective; improved precision/recall and PRD of their samples "
           "against held-out real rows (mean ± std over seeds when several)."
           "\n"]
  for result in results:
    info = out[result.dataset]["info"]
    mono = out[result.dataset]["monotone"]
    parts.append(f"## {result.dataset} ({info['dim']}-d, "
                 f"{info['num_train']} train / {info['num_test']} test rows)\n")
    parts.append(markdown_table(result) + "\n")
    parts.append(
        f"Precision rises with lam: {mono['precision_rises']} (within "
        f"sampling noise: {mono.get('precision_rises_within_noise')}; "
        f"largest vs smallest lam: "
        f"{mono.get('precision_rises_end_to_end')}); recall falls: "
        f"{mono['recall_falls']} (within noise: "
        f"{mono.get('recall_falls_within_noise')}; largest vs smallest: "
        f"{mono.get('recall_falls_end_to_end')}); MLE on the recall side: "
        f"{mono['mle_on_recall_side']}.\n")
  parts.append("![trade-off](tradeoff.png)\n\n![samples](samples.png)\n")
  return "\n".join(parts)
