"""Train one flow on a 2-D mixture or digits features and evaluate it.

`run(config, workdir)` is the library side of `experiments/train_flow.py`
(config: `configs/train_flow.py`):

  1. data      ring (8 Gaussians on a circle), grid (25 on a square grid) or
               digits (sklearn's digits embedded by the shipped CNN, 64-d:
               `gendiag.features.digits_features`), split into a training
               set and a held-out real set (`flow_datasets.load_labelled`)
  2. train     optionally `pretrain_mle_steps` of maximum likelihood (in
               workdir/pretrain), then the configured objective
               (`losses.make_objective`) with `trainer.train` in
               workdir/train: checkpoints there make a killed run resumable
  3. evaluate  as many flow samples as held-out reals against them with
               gendiag's own metrics (`gendiag.flows.evaluate`): improved
               precision/recall (k=3), precision/recall/density/coverage
               (k=5), PRD (F_8 recall-like, F_1/8 precision-like), MAUVE,
               and the held-out NLL (nats)
  4. write     metrics.json, samples.npz and PNGs (2-D: samples over the
               real data and the flow's log-density; every dataset: the PRD
               curve with the improved-PR point)
"""

import json
import os
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from gendiag import experiments
from gendiag.data import flow_datasets
from gendiag.flows import evaluate as evaluate_lib
from gendiag.flows import losses
from gendiag.flows import models
from gendiag.flows import trainer

# metrics.json's "eval" names of `evaluate_lib.evaluate`'s entries, in order.
EVAL_NAMES = (("precision", "improved_precision"),
              ("recall", "improved_recall"),
              ("prdc_precision", "prdc_precision"),
              ("prdc_recall", "prdc_recall"), ("density", "density"),
              ("coverage", "coverage"), ("prd_f_beta", "prd_f8"),
              ("prd_f_inv_beta", "prd_f1_8"),
              ("prd_converged", "prd_kmeans_converged"), ("mauve", "mauve"))


def load_data(data_config, key: jax.Array) -> flow_datasets.Data:
  """The dataset of `config.data` (`flow_datasets.load_labelled`)."""
  return flow_datasets.load_labelled(
      data_config.name, key=key, num_train=data_config.num_train,
      num_test=data_config.num_test, std=data_config.std,
      extractor=data_config.get("extractor", "digits_net"))


def build(config, data: flow_datasets.Data):
  """(flow, objective, train config, pretrain config or None) of `config`.

  Every bad setting raises ValueError here, before any training.
  """
  oc, tc = config.objective, config.train
  flow = flow_for(config, data.train.shape[1], data.num_classes, data.train)
  divergence = oc.divergence
  objective = losses.make_objective(
      oc.name, divergence=divergence,
      lam=oc.lam if divergence == "pr" else None, form=None,
      auxiliary=oc.auxiliary,
      critic_hidden_sizes=tuple(oc.critic_hidden_sizes),
      critic_fourier_features=oc.critic_fourier_features,
      critic_fourier_scale=oc.critic_fourier_scale,
      kernel=oc.kernel, bandwidth_multipliers=tuple(oc.bandwidth_multipliers))
  common = dict(batch_size=tc.batch_size, log_every=tc.log_every,
                checkpoint_every=tc.checkpoint_every)
  train_config = trainer.TrainConfig(
      num_steps=tc.num_steps, learning_rate=tc.learning_rate,
      critic_learning_rate=tc.critic_learning_rate,
      critic_weight_decay=tc.critic_weight_decay,
      critic_steps=tc.critic_steps,
      critic_warmup_steps=tc.critic_warmup_steps, grad_clip=tc.grad_clip,
      **common)
  pretrain = None
  if tc.pretrain_mle_steps:
    pretrain = trainer.TrainConfig(num_steps=tc.pretrain_mle_steps,
                                   learning_rate=tc.pretrain_learning_rate,
                                   grad_clip=tc.grad_clip, **common)
  return flow, objective, train_config, pretrain


def _sample(flow, params, key, data: flow_datasets.Data) -> np.ndarray:
  labels = jnp.asarray(data.test_labels) if flow.num_classes else None
  n = data.test.shape[0]
  sample = jax.jit(lambda p, k, lab: flow.sample(p, k, n, lab))
  return np.asarray(sample(params, key, labels))


def _held_out_nll(flow, params, data: flow_datasets.Data) -> float:
  labels = jnp.asarray(data.test_labels) if flow.num_classes else None
  log_q = jax.jit(flow.log_prob)(params, jnp.asarray(data.test), labels)
  return float(-jnp.mean(log_q))


def run(config, workdir: str) -> dict:
  """Trains and evaluates one flow (module docstring); returns metrics.json.

  Restarting with the same config and workdir resumes from the last
  checkpoint and ends on the same parameters as an uninterrupted run.
  """
  key = jax.random.key(int(config.seed))
  key_data, key_pre, key_train, key_sample, key_eval = jax.random.split(key, 5)
  data = load_data(config.data, key_data)
  flow, objective, train_config, pretrain = build(config, data)
  os.makedirs(workdir, exist_ok=True)
  labels = data.train_labels if flow.num_classes else None
  init_params = None
  if pretrain is not None:
    logging.info("train_flow: %d steps of maximum likelihood first",
                 pretrain.num_steps)
    init_params = trainer.train(
        flow, losses.make_objective("mle"), data.train, labels, key=key_pre,
        config=pretrain, workdir=os.path.join(workdir, "pretrain")).params
  logging.info("train_flow: %s on %s (%d x %d), %s flow",
               objective.name, data.name, *data.train.shape, flow.kind)
  result = trainer.train(flow, objective, data.train, labels, key=key_train,
                         config=train_config,
                         workdir=os.path.join(workdir, "train"),
                         init_params=init_params)
  samples = _sample(flow, result.params, key_sample, data)
  if not np.all(np.isfinite(samples)):
    raise FloatingPointError("the trained flow produced NaN/inf samples; "
                             "lower the learning rate or raise grad_clip.")
  ec = config.eval
  key_prd, key_mauve = jax.random.split(key_eval)
  scores = evaluate_lib.evaluate(
      jnp.asarray(data.test), jnp.asarray(samples), key=key_prd, k=ec.k_pr,
      prdc_k=ec.k_prdc, prd_clusters=ec.prd_num_clusters,
      prd_runs=ec.prd_num_runs, mauve_key=key_mauve if ec.mauve else None)
  metrics = {name: scores[ours] for ours, name in EVAL_NAMES
             if ours in scores}
  metrics["held_out_nll"] = _held_out_nll(flow, result.params, data)
  curve = {"precision": scores["prd_precision"].tolist(),
           "recall": scores["prd_recall"].tolist()}
  report = {
      "meta": {"config": json.loads(config.to_json()), "seed": config.seed,
               "versions": experiments.package_versions(
                   ("jax", "flax", "optax", "distrax", "orbax-checkpoint")),
               "flow": flow.to_dict(),
               "objective": result.objective.to_dict(),
               "num_params": models.num_params(result.params),
               "resumed_from": result.resumed_from},
      "train": result.metrics, "eval": metrics, "prd_curve": curve}
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(report, f, indent=1)
  np.savez(os.path.join(workdir, "samples.npz"), samples=samples,
           labels=data.test_labels if flow.num_classes else np.zeros(0),
           real=data.test, real_labels=data.test_labels)
  figures = {"pr.png": pr_figure(curve, metrics, title=_title(config))}
  if flow.dim == 2:
    figures["samples.png"] = samples_figure(
        flow, result.params, data.test, samples, title=_title(config),
        labels=data.test_labels if flow.num_classes else None)
  for name, fig in figures.items():
    fig.savefig(os.path.join(workdir, name), dpi=110)
  logging.info("train_flow: %s", json.dumps(metrics))
  return report


def _title(config) -> str:
  oc = config.objective
  if oc.name.startswith("fdiv"):
    what = oc.divergence + (f" lam={oc.lam:g}" if oc.divergence == "pr"
                            else "")
    return f"{config.data.name}: {oc.name} ({what})"
  return f"{config.data.name}: {oc.name}"


def samples_figure(flow, params, real, samples, *, title: str = "",
                   resolution: int = 150, labels=None) -> Figure:
  """Two panels: samples over the real data; log q on a grid (2-D flows).

  For a class-conditional flow the density panel shows the mixture over
  `labels`' empirical class frequencies (default: uniform classes).
  """
  if flow.dim != 2:
    raise ValueError(f"samples_figure draws 2-D flows; this one has dim="
                     f"{flow.dim}.")
  lo = np.minimum(real.min(0), np.percentile(samples, 1, axis=0)) - 0.5
  hi = np.maximum(real.max(0), np.percentile(samples, 99, axis=0)) + 0.5
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                       np.linspace(lo[1], hi[1], resolution))
  grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)
  log_q = _grid_log_density(flow, params, grid, labels)
  fig = Figure(figsize=(9.0, 4.2), layout="constrained")
  ax_s, ax_d = fig.subplots(1, 2)
  ax_s.scatter(real[:, 0], real[:, 1], s=3, c="0.6", label="held-out real")
  ax_s.scatter(samples[:, 0], samples[:, 1], s=3, c="C3", alpha=0.6,
               label="flow samples")
  ax_s.legend(loc="upper right", fontsize=7, markerscale=3)
  ax_s.set_title("samples")
  floor = np.percentile(log_q, 5)
  cs = ax_d.contourf(gx, gy, np.maximum(log_q, floor).reshape(gx.shape),
                     levels=30, cmap="viridis")
  fig.colorbar(cs, ax=ax_d, label="log q(x)")
  ax_d.set_title("log-density")
  for ax in (ax_s, ax_d):
    ax.set_aspect("equal")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
  fig.suptitle(title)
  return fig


def _grid_log_density(flow, params, grid, labels) -> np.ndarray:
  if not flow.num_classes:
    return np.asarray(jax.jit(flow.log_prob)(params, grid))
  counts = (np.ones(flow.num_classes) if labels is None else
            np.bincount(np.asarray(labels), minlength=flow.num_classes))
  weights = counts / counts.sum()
  per_class = jax.jit(lambda p, c: flow.log_prob(
      p, grid, jnp.full((grid.shape[0],), c, jnp.int32)))
  stack = np.stack([np.asarray(per_class(params, c))
                    for c in range(flow.num_classes)])
  with np.errstate(divide="ignore"):
    return np.asarray(jax.scipy.special.logsumexp(
        stack + np.log(weights)[:, None], axis=0))


def pr_figure(curve: dict, metrics: dict, *, title: str = "") -> Figure:
  """The PRD curve (recall, precision) with the improved-PR point."""
  fig = Figure(figsize=(4.4, 4.2), layout="constrained")
  ax = fig.subplots()
  ax.plot(curve["recall"], curve["precision"], c="C0",
          label=f"PRD (F8 {metrics['prd_f8']:.2f}, F1/8 "
                f"{metrics['prd_f1_8']:.2f})")
  ax.scatter([metrics["improved_recall"]], [metrics["improved_precision"]],
             c="C3", zorder=3, label="improved P/R (k=3)")
  ax.set_xlim(0, 1.02)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.legend(loc="lower left", fontsize=7)
  ax.set_title(title, fontsize=9)
  return fig


def flow_for(config, dim: int, num_classes: int = 0,
             data: Optional[np.ndarray] = None) -> models.Flow:
  """The flow of `config.flow` for `dim`-d data (normalised to `data`)."""
  fc = config.flow
  flow = models.Flow(dim=dim, kind=fc.kind, num_layers=fc.num_layers,
                     hidden_sizes=tuple(fc.hidden_sizes),
                     num_bins=fc.num_bins,
                     num_classes=num_classes if fc.conditional else 0,
                     permutation=fc.permutation)
  return flow if data is None else flow.normalized_for(data)
