"""Seeded synthetic distributions and simulators of generative-model failures.

Distributions (each returns features and integer labels):
  ring      num_modes 2-D Gaussians evenly spaced on a circle.
  grid      side x side 2-D Gaussians on a square grid.
  mixture   num_classes isotropic Gaussians in `dim` dimensions whose centres
            are fixed by `make_mixture`'s key, so several draws share modes.

Failure simulators take real samples (a pool never used as the reference
set) and return a "model's" samples with one known failure:
  drop_classes       some classes are never generated (mode dropping)
  imbalance_classes  classes generated with the wrong frequencies
  memorize           a fraction of samples are copies of training samples
  add_noise          every sample is perturbed (low quality / blur)
  shrink             samples pulled towards their class mean (low diversity,
                     like truncation)
"""

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _results


def ring(key: jax.Array, n: int, *, num_modes: int = 8, radius: float = 2.0,
         std: float = 0.05):
  """n points from num_modes Gaussians on a circle: ((n, 2), (n,) labels)."""
  key_label, key_noise = jax.random.split(key)
  labels = jax.random.randint(key_label, (n,), 0, num_modes)
  angle = 2 * jnp.pi * labels / num_modes
  centres = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
  return centres + std * jax.random.normal(key_noise, (n, 2)), labels


def grid(key: jax.Array, n: int, *, side: int = 5, spacing: float = 1.0,
         std: float = 0.05):
  """n points from side^2 Gaussians on a centred grid: ((n, 2), (n,))."""
  key_label, key_noise = jax.random.split(key)
  labels = jax.random.randint(key_label, (n,), 0, side * side)
  coords = jnp.stack([labels // side, labels % side], axis=1)
  centres = spacing * (coords - (side - 1) / 2.0)
  return centres + std * jax.random.normal(key_noise, (n, 2)), labels


@_results.result
class Mixture:
  """An isotropic Gaussian mixture: centres (K, d), per-class std (K,)."""
  centres: jax.Array
  stds: jax.Array


def make_mixture(key: jax.Array, *, num_classes: int = 10, dim: int = 64,
                 separation: float = 4.0, std: float = 1.0) -> Mixture:
  """Random class centres at pairwise distance about `separation`.

  Centres are Gaussian with per-coordinate scale separation / sqrt(2 dim), so
  any two are about `separation` apart; with std 1 the classes overlap a
  little, as classes of real features do.
  """
  centres = jax.random.normal(key, (num_classes, dim)) * (
      separation / np.sqrt(2.0 * dim))
  return Mixture(centres=centres, stds=jnp.full((num_classes,), std))


def sample_mixture(key: jax.Array, mixture: Mixture, n: int, *,
                   weights: Optional[Sequence[float]] = None):
  """n draws from the mixture: ((n, d) features, (n,) labels)."""
  num_classes, dim = mixture.centres.shape
  key_label, key_noise = jax.random.split(key)
  logits = (jnp.zeros(num_classes) if weights is None
            else jnp.log(jnp.asarray(weights, jnp.float32)))
  labels = jax.random.categorical(key_label, logits, shape=(n,))
  noise = jax.random.normal(key_noise, (n, dim))
  return mixture.centres[labels] + mixture.stds[labels, None] * noise, labels


def _check_labelled(x, labels):
  if np.shape(labels) != (np.shape(x)[0],):
    raise ValueError(f"labels must have shape ({np.shape(x)[0]},) to match x; "
                     f"got {np.shape(labels)}.")


def _resample(key, x, labels, class_weights, n):
  """n rows of x drawn with replacement, P(row) proportional to its class."""
  counts = np.bincount(np.asarray(labels), minlength=len(class_weights))
  weights = np.asarray(class_weights, np.float64)[np.asarray(labels)]
  weights = weights / np.maximum(counts[np.asarray(labels)], 1)
  if weights.sum() <= 0:
    raise ValueError("class weights leave no class to sample from.")
  idx = jax.random.choice(key, x.shape[0], (n,), replace=True,
                          p=jnp.asarray(weights / weights.sum()))
  return x[idx], labels[idx]


def drop_classes(key: jax.Array, x: jax.Array, labels: jax.Array,
                 classes: Sequence[int], n: int):
  """A model that never generates `classes`; others keep their frequency."""
  _check_labelled(x, labels)
  num_classes = int(np.max(labels)) + 1
  counts = np.bincount(np.asarray(labels), minlength=num_classes)
  weights = counts.astype(np.float64)
  weights[list(classes)] = 0.0
  return _resample(key, x, labels, weights, n)


def imbalance_classes(key: jax.Array, x: jax.Array, labels: jax.Array,
                      class_weights: Sequence[float], n: int):
  """A model whose class frequencies are `class_weights` (normalised)."""
  _check_labelled(x, labels)
  return _resample(key, x, labels, class_weights, n)


def memorize(key: jax.Array, fresh: jax.Array, train: jax.Array, *,
             fraction: float, noise_std: float = 0.0):
  """Replaces a fraction of `fresh` samples by (noisy) training copies.

  Args:
    key: random key.
    fresh: (n, d) samples of a good model.
    train: (t, d) the model's training set.
    fraction: share of the n outputs that copy a training sample.
    noise_std: std of Gaussian noise added to the copies.

  Returns:
    ((n, d) samples, (n,) index of the copied training row or -1).
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be in [0, 1]; got {fraction}.")
  n = fresh.shape[0]
  num_copies = int(round(fraction * n))
  key_rows, key_src, key_noise = jax.random.split(key, 3)
  rows = jax.random.permutation(key_rows, n)[:num_copies]
  src = jax.random.choice(key_src, train.shape[0], (num_copies,),
                          replace=num_copies > train.shape[0])
  copies = train[src] + noise_std * jax.random.normal(
      key_noise, (num_copies, train.shape[1]))
  source = jnp.full((n,), -1, jnp.int32).at[rows].set(src.astype(jnp.int32))
  return fresh.at[rows].set(copies), source


def add_noise(key: jax.Array, x: jax.Array, *, std: float):
  """Adds isotropic Gaussian noise of scale `std` to every sample."""
  return x + std * jax.random.normal(key, x.shape)


def shrink(x: jax.Array, labels: jax.Array, *, factor: float):
  """Pulls samples towards their class mean: m_c + factor (x - m_c)."""
  _check_labelled(x, labels)
  num_classes = int(np.max(labels)) + 1
  one_hot = jax.nn.one_hot(labels, num_classes)
  means = (jnp.matmul(one_hot.T, x, precision=jax.lax.Precision.HIGHEST)
           / jnp.maximum(one_hot.sum(0), 1.0)[:, None])
  return means[labels] + factor * (x - means[labels])


@dataclasses.dataclass(frozen=True)
class SimulatedModel:
  """A simulated generator's output and the failure it was built with."""
  name: str
  features: jax.Array
  labels: jax.Array
  failure: str


def simulate_models(key: jax.Array, pool: jax.Array, pool_labels: jax.Array,
                    train: jax.Array, *, n: int,
                    dropped: Sequence[int] = (3, 8),
                    imbalance: float = 0.2, copy_fraction: float = 0.5,
                    noise_std: float = 1.0, shrink_factor: float = 0.5):
  """One model per failure mode plus a good control, from a held-out pool.

  Args:
    key: random key.
    pool: (p, d) real samples never used as the reference set.
    pool_labels: (p,) their labels.
    train: (t, d) the "training set" a memorising model copies from.
    n: samples per model.
    dropped: classes the mode-dropping model never generates.
    imbalance: weight of the odd classes relative to the even ones.
    copy_fraction: share of the memorising model's samples that are copies.
    noise_std: noise of the low-quality model.
    shrink_factor: spread kept by the low-diversity model.

  Returns:
    A list of `SimulatedModel`.
  """
  num_classes = int(np.max(pool_labels)) + 1
  keys = jax.random.split(key, 6)
  good, good_labels = _resample(keys[0], pool, pool_labels,
                                np.ones(num_classes), n)
  dropped_x, dropped_y = drop_classes(keys[1], pool, pool_labels, dropped, n)
  weights = [1.0 if c % 2 == 0 else imbalance for c in range(num_classes)]
  imb_x, imb_y = imbalance_classes(keys[2], pool, pool_labels, weights, n)
  mem_x, _ = memorize(keys[3], good, train, fraction=copy_fraction)
  noisy = add_noise(keys[4], good, std=noise_std)
  shrunk = shrink(good, good_labels, factor=shrink_factor)
  names = ", ".join(str(c) for c in dropped)
  return [
      SimulatedModel("good", good, good_labels, "none (held-out real samples)"),
      SimulatedModel("dropped", dropped_x, dropped_y,
                     f"classes {names} never generated"),
      SimulatedModel("imbalanced", imb_x, imb_y,
                     f"odd classes at {imbalance:g}x the even ones"),
      SimulatedModel("memorized", mem_x, good_labels,
                     f"{copy_fraction:.0%} copies of training samples"),
      SimulatedModel("noisy", noisy, good_labels,
                     f"Gaussian noise of std {noise_std:g} added"),
      SimulatedModel("shrunk", shrunk, good_labels,
                     f"spread around class means scaled by {shrink_factor:g}"),
  ]
