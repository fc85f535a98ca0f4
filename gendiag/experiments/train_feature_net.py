"""Trains the shipped digits feature network: `run(config, workdir)`.

The library side of experiments/train_feature_net.py (config:
configs/train_feature_net.py). `train` fits
`gendiag.features.digits_net.DigitsNet` with AdamW on labelled digits;
`run` trains it on `gendiag.data.digits.train_test()`'s train split and
writes the weights (`digits_net.save_params`) and metrics.json.
"""

import json
import os
from typing import Dict, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendiag.data import digits
from gendiag.features import digits_net


def shift_images(images: jax.Array, shifts: jax.Array, max_shift: int):
  """Translates image i by shifts[i] - max_shift pixels (rows, cols), zero fill.

  Args:
    images: (n, H, W).
    shifts: (n, 2) ints in [0, 2 max_shift].
    max_shift: the largest translation.
  """
  if max_shift == 0:
    return images
  n, h, w = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2))
  return jax.vmap(lambda im, s: jax.lax.dynamic_slice(im, s, (h, w)))(
      padded, shifts)


def train(key: jax.Array, images, labels, *, steps: int = 3000,
          batch_size: int = 64, learning_rate: float = 3e-3,
          weight_decay: float = 1e-4, max_shift: int = 1,
          log_every: int = 500) -> Tuple[Dict, np.ndarray]:
  """Trains `DigitsNet` with AdamW and a cosine schedule on labelled digits.

  Minibatches of `batch_size` are drawn with replacement; each image is
  randomly translated by up to `max_shift` pixels. Cross-entropy loss.
  The initial weights, minibatch rows and shifts are drawn on the host
  from numpy Generators seeded by `key` (no RNG in the compiled loop).

  Args:
    key: jax.random key.
    images: (n, 8, 8) training images in [0, 1].
    labels: (n,) int labels in 0..9.
    steps: optimiser steps.
    batch_size: images per step.
    learning_rate: peak AdamW rate (cosine decay to 0).
    weight_decay: AdamW decoupled weight decay.
    max_shift: augmentation translation in pixels.
    log_every: steps between progress logs.

  Returns:
    (params, (steps,) training losses).
  """
  images = digits_net.as_images(images, "images")
  labels = jnp.asarray(labels, jnp.int32)
  model = digits_net.DigitsNet()
  params = jax.tree.map(lambda a: a[0], digits_net.init_params(
      model, digits_net.IMAGE_SHAPE, [digits_net.host_rng(key, 0)]))
  tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps),
                   weight_decay=weight_decay)
  opt_state = tx.init(params)
  rng = digits_net.host_rng(key, 1)
  rows = rng.integers(0, images.shape[0], (steps, batch_size))
  shifts = rng.integers(0, 2 * max_shift + 1, (steps, batch_size, 2))

  def loss_fn(p, x, y):
    logits, _ = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def run(params, opt_state, rows, shifts):
    def step(carry, batch):
      p, s = carry
      idx, shift = batch
      x = shift_images(images[idx], shift, max_shift)
      loss, grads = jax.value_and_grad(loss_fn)(p, x, labels[idx])
      updates, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), loss
    return jax.lax.scan(step, (params, opt_state), (rows, shifts))

  losses = []
  for start in range(0, steps, log_every):
    stop = min(start + log_every, steps)
    (params, opt_state), chunk = run(params, opt_state, rows[start:stop],
                                     shifts[start:stop])
    losses.append(np.asarray(chunk))
    logging.info("feature net step %d/%d: loss %.4f", stop, steps,
                 float(np.mean(chunk[-50:])))
  return params, np.concatenate(losses)


def run(config, workdir: str) -> Dict[str, float]:
  """Trains the feature network on the fixed digits split and saves it.

  Trains on `gendiag.data.digits.train_test()`'s train split, measures top-1
  accuracy on both splits and the feature scale (root mean square of the
  training digits' penultimate features), and writes `config.output` (default
  `workdir/digits_net.npz`) with the accuracies as metadata, plus
  `workdir/metrics.json`.

  Args:
    config: seed, steps, batch_size, learning_rate, weight_decay, max_shift,
      log_every, output (see configs/train_feature_net.py).
    workdir: output directory.

  Returns:
    {"train_accuracy", "test_accuracy", "final_loss", "num_params", ...}.
  """
  os.makedirs(workdir, exist_ok=True)
  data = digits.load()
  train_idx, test_idx = digits.train_test()
  params, losses = train(
      jax.random.key(config.seed), data.images[train_idx],
      data.labels[train_idx], steps=config.steps,
      batch_size=config.batch_size, learning_rate=config.learning_rate,
      weight_decay=config.weight_decay, max_shift=config.max_shift,
      log_every=config.log_every)
  if not np.all(np.isfinite(losses)):
    raise RuntimeError("the training loss became NaN/inf; lower the "
                       "learning rate.")
  train_features = digits_net.digits_features(data.images[train_idx],
                                              params=params, scale=1.0)
  metrics = {
      "feature_scale": float(jnp.sqrt(jnp.mean(train_features ** 2))),
      "train_accuracy": digits_net.accuracy(
          params, data.images[train_idx], data.labels[train_idx]),
      "test_accuracy": digits_net.accuracy(
          params, data.images[test_idx], data.labels[test_idx]),
      "final_loss": float(np.mean(losses[-100:])),
      "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
      "num_train": int(len(train_idx)),
      "num_test": int(len(test_idx)),
      "steps": int(config.steps),
      "seed": int(config.seed),
  }
  output = config.output or os.path.join(workdir, "digits_net.npz")
  digits_net.save_params(output, params, **metrics)
  metrics["output"] = output
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  logging.info("feature net: %s", json.dumps(metrics))
  return metrics
