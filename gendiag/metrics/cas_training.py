"""The CAS classifier recipe and its training, all training sets in one vmap.

`Recipe` fixes the classifier (a small MLP or CNN) and its AdamW schedule;
`train_and_score` trains and scores every (training set, seed) pair of
`gendiag.metrics.cas.classification_accuracy_score` in one jit-compiled,
RNG-free program: seeds enter through the initial parameters and the
minibatch rows, both drawn on the host.
"""

import dataclasses
import functools
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gendiag import _checks
from gendiag.features import digits_net

HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The fixed classifier recipe (hashable: a static argument of jit).

  Attributes:
    architecture: "mlp" (flattens any input, e.g. images or features) or
      "cnn" (inputs (n, H, W) or (n, H, W, C), H and W even: two 3x3
      'SAME' conv layers with GELU, each followed by 2x2 average pooling,
      then a linear classifier on the flattened maps).
    hidden: MLP hidden widths, or the two CNN channel counts.
    steps: AdamW steps (minibatches drawn with replacement, so every
      training set gets the same number of steps whatever its size).
    batch_size: examples per step.
    learning_rate: peak rate of a cosine decay to 0.
    weight_decay: AdamW decoupled weight decay.
  """
  architecture: str = "mlp"
  hidden: Tuple[int, ...] = (128,)
  steps: int = 400
  batch_size: int = 64
  learning_rate: float = 3e-3
  weight_decay: float = 1e-4

  def __post_init__(self):
    if self.architecture not in ("mlp", "cnn"):
      raise ValueError(f"Recipe.architecture must be 'mlp' or 'cnn'; got "
                       f"{self.architecture!r}.")
    if self.architecture == "cnn" and len(self.hidden) != 2:
      raise ValueError("the cnn recipe takes two channel counts in `hidden`.")
    _checks.check_positive_int(self.steps, "Recipe.steps")
    _checks.check_positive_int(self.batch_size, "Recipe.batch_size")


class _MLP(nn.Module):
  hidden: Tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.gelu(nn.Dense(width, precision=HIGHEST)(x))
    return nn.Dense(self.num_classes, precision=HIGHEST)(x)


class _CNN(nn.Module):
  hidden: Tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    if x.ndim == 3:
      x = x[..., None]
    x = nn.gelu(digits_net.Conv3x3(self.hidden[0])(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.gelu(digits_net.Conv3x3(self.hidden[1])(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes, precision=HIGHEST)(x)


def classifier(recipe: Recipe, num_classes: int) -> nn.Module:
  """The recipe's flax module, mapping a batch of inputs to logits."""
  cls = _MLP if recipe.architecture == "mlp" else _CNN
  return cls(tuple(recipe.hidden), num_classes)


def scores(logits: jax.Array, labels: jax.Array, *, top_k: int,
           num_classes: int):
  """Top-1, top-k and per-class accuracy of (n, C) logits.

  per_class[c] = mean over rows with label c of [argmax logits == c].
  Rows whose label is absent give NaN for that class (callers check first).

  Returns:
    (top1 scalar, topk scalar, per_class (C,)).
  """
  pred = jnp.argmax(logits, axis=-1)
  correct = (pred == labels).astype(jnp.float32)
  _, best = jax.lax.top_k(logits, top_k)
  in_topk = jnp.any(best == labels[:, None], axis=-1).astype(jnp.float32)
  one_hot = jax.nn.one_hot(labels, num_classes)
  per_class = jnp.sum(one_hot * correct[:, None], 0) / one_hot.sum(0)
  return correct.mean(), in_topk.mean(), per_class


def bucket(n: int, size: int = 256) -> int:
  """n rounded up to a multiple of `size`, so similar calls share programs."""
  return max(size, -(-n // size) * size)


def init_params(recipe: Recipe, num_classes: int, input_shape, rngs):
  """Initial classifier parameters, one set per numpy Generator, stacked.

  LeCun-normal kernels and zero biases drawn on the host
  (`digits_net.init_params`): compiling jax's truncated normal costs
  seconds on CPU, longer than training the recipe.
  """
  return digits_net.init_params(classifier(recipe, num_classes),
                                input_shape, rngs)


@functools.partial(jax.jit, static_argnames=("recipe", "num_classes",
                                             "top_k"))
def train_and_score(params, inputs, labels, test, test_labels, batches,
                    train_rows, counts, *, recipe: Recipe, num_classes: int,
                    top_k: int):
  """Trains and scores (T, S) classifiers (T sets x S seeds) under vmap.

  No randomness on the device: seeds enter through `params` (initial
  weights) and `batches` (minibatch rows drawn on the host from the key).

  Args:
    params: (S, ...) initial parameters, shared by every training set.
    inputs: (N, ...) the pool every training set indexes into.
    labels: (N,) their labels.
    test: (n_t, ...) real test inputs; test_labels (n_t,).
    batches: (T, S, steps, batch_size) rows of `inputs` for each step.
    train_rows: (T, S, N_max) each training set's rows (padded);
      counts (T, S) their valid lengths.
  """
  model = classifier(recipe, num_classes)
  tx = optax.adamw(optax.cosine_decay_schedule(recipe.learning_rate,
                                               recipe.steps),
                   weight_decay=recipe.weight_decay)

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, rows):
    p, s = carry
    loss, grads = jax.value_and_grad(loss_fn)(p, inputs[rows], labels[rows])
    updates, s = tx.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), loss

  def one(p0, steps_rows, rows, count):
    (p, _), losses = jax.lax.scan(step, (p0, tx.init(p0)), steps_rows)
    top1, topk, per_class = scores(model.apply({"params": p}, test),
                                   test_labels, top_k=top_k,
                                   num_classes=num_classes)
    train_pred = jnp.argmax(model.apply({"params": p}, inputs[rows]), -1)
    valid = jnp.arange(rows.shape[0]) < count
    train_acc = jnp.sum((train_pred == labels[rows]) & valid) / count
    tail = max(1, recipe.steps // 10)
    final, initial = jnp.mean(losses[-tail:]), jnp.mean(losses[:tail])
    ok = jnp.isfinite(losses).all() & (final < initial)
    return top1, topk, per_class, train_acc, final, ok

  # One flat vmap over the T x S runs (compiles about twice as fast as
  # nested vmaps over sets and seeds).
  num_sets, num_seeds = counts.shape
  flat = lambda a: a.reshape((num_sets * num_seeds,) + a.shape[2:])
  params = jax.tree.map(
      lambda a: flat(jnp.broadcast_to(a, (num_sets,) + a.shape)), params)
  outs = jax.vmap(one)(params, flat(batches), flat(train_rows), flat(counts))
  return jax.tree.map(lambda a: a.reshape((num_sets, num_seeds) + a.shape[1:]),
                      outs)
