"""Classification Accuracy Score (Ravuri & Vinyals, 2019).

Train a fixed classifier recipe only on a class-conditional model's labelled
samples, test it on real held-out data, and compare with the same recipe
trained on real data:

  CAS      = acc_test(f_generated),   f_generated trained on x, y ~ p_theta
  Real     = acc_test(f_real),        f_real trained on the real training set
  gap      = Real - CAS               (0 for a model whose p(y|x) is right)
  NAS(f)   = acc_test(f_real+f)       real + f * n_real generated samples

Per-class accuracies say WHICH classes the model gets wrong: a class the
model never generates (or generates unrecognisably) scores 0%.

The generated training set follows the paper: "each example from the
original training set is replaced with a model sample from the same class",
so its label histogram is exactly the real one (classes the model has no
samples of are left empty, and reported in `missing_classes`).

Several seeds run at once under `vmap` (the same seed gives every training
set the same initialisation and minibatch stream, so differences between
rows are paired), and all training sets (real, generated, NAS) of a seed
train in the same `vmap`: one jit-compiled program per call.
"""

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.features import digits_net
from gendiag.metrics import cas_training


@_results.result(static=("top_k", "num_classes", "nas_fractions"))
class CASResult:
  """Classification Accuracy Score of one model, with its real reference.

  Per-seed arrays have a leading axis of length num_seeds (S); per-class
  ones a trailing axis of num_classes (C); NAS ones a leading axis over
  `nas_fractions` (F). Training-set axes (T = 2 + F) are ordered real,
  generated, then the NAS fractions. Spreads are standard deviations over
  seeds (ddof=1; 0 with one seed).

  Attributes:
    cas: mean top-1 test accuracy of classifiers trained on generated data.
    cas_std: its spread over seeds.
    cas_topk: mean top-k accuracy (k = `top_k`).
    real_cas: mean top-1 accuracy of the same recipe trained on real data.
    real_std: its spread over seeds.
    real_topk: mean top-k accuracy of the real reference.
    gap: real_cas - cas (the model's shortfall).
    gap_std: spread over seeds of the paired per-seed gaps.
    top1: (S,) generated top-1 per seed.
    topk: (S,) generated top-k per seed.
    real_top1: (S,) real top-1 per seed.
    per_class: (S, C) generated per-class accuracy (recall of each class).
    real_per_class: (S, C) real per-class accuracy.
    per_class_gap: (C,) mean real minus mean generated per-class accuracy.
    zero_classes: (C,) bool, classes at 0% accuracy in every seed.
    missing_classes: (C,) bool, classes with no generated samples.
    nas: (F,) mean top-1 of real + fraction generated (naive augmentation).
    nas_std: (F,) its spread over seeds.
    nas_top1: (F, S) per seed.
    train_accuracy: (T, S) each classifier's accuracy on its own training
      set (low values: the recipe could not fit that data).
    final_loss: (T, S) mean training loss over the last 10% of steps.
    converged: bool, every loss finite and below its initial value.
    num_train: (T,) training-set sizes.
    top_k: k of the top-k accuracies.
    num_classes: C.
    nas_fractions: the fractions of the NAS rows.
  """
  cas: jax.Array
  cas_std: jax.Array
  cas_topk: jax.Array
  real_cas: jax.Array
  real_std: jax.Array
  real_topk: jax.Array
  gap: jax.Array
  gap_std: jax.Array
  top1: jax.Array
  topk: jax.Array
  real_top1: jax.Array
  per_class: jax.Array
  real_per_class: jax.Array
  per_class_gap: jax.Array
  zero_classes: jax.Array
  missing_classes: jax.Array
  nas: jax.Array
  nas_std: jax.Array
  nas_top1: jax.Array
  train_accuracy: jax.Array
  final_loss: jax.Array
  converged: jax.Array
  num_train: jax.Array
  top_k: int
  num_classes: int
  nas_fractions: Tuple[float, ...]


def match_labels(rng: np.random.Generator, wanted: np.ndarray,
                 available: np.ndarray) -> np.ndarray:
  """For each wanted label, a row of `available` with that label.

  Rows of a class are used without replacement while they last (a fresh
  permutation each pass), so a model with at least as many samples of a
  class as wanted contributes distinct samples. Wanted labels with no
  available row are skipped.

  Args:
    rng: numpy Generator.
    wanted: (m,) labels to match.
    available: (n,) labels of the candidate rows.

  Returns:
    int indices into `available`, grouped by class in increasing order.
  """
  out = []
  for c in np.unique(wanted):
    need = int(np.sum(wanted == c))
    rows = np.flatnonzero(available == c)
    if rows.size == 0:
      continue
    passes = -(-need // rows.size)
    order = np.concatenate([rng.permutation(rows.size)
                            for _ in range(passes)])[:need]
    out.append(rows[order])
  return np.concatenate(out) if out else np.zeros((0,), int)


def _check_inputs(x, name, shape, recipe):
  x_shape = np.shape(x)
  if len(x_shape) < 2:
    raise ValueError(f"`{name}` must be (n, ...) inputs (images or "
                     f"features); got shape {x_shape}.")
  if shape is not None and tuple(x_shape[1:]) != tuple(shape):
    raise ValueError(
        f"`{name}` has inputs of shape {tuple(x_shape[1:])} but `real` has "
        f"{tuple(shape)}; the classifier needs one input shape: embed or "
        "resize every set the same way.")
  if recipe.architecture == "cnn" and len(x_shape) not in (3, 4):
    raise ValueError(
        f"the cnn recipe takes images (n, H, W) or (n, H, W, C); `{name}` "
        f"has shape {x_shape}. Reshape them or use Recipe('mlp').")
  flat = _checks.check_features(
      np.reshape(_checks.as_float(x, name), (x_shape[0], -1)), name)
  _checks.check_range(flat, name)


def _validate(real, generated, test, real_labels, generated_labels,
              test_labels, *, num_classes, num_seeds, top_k, nas_fractions,
              recipe):
  """Checks every argument of `classification_accuracy_score`.

  Returns:
    (input shape, num_classes, (real, generated, test) int32 labels,
    nas_fractions as floats, (C,) bool classes without generated samples).
  """
  _checks.check_positive_int(num_seeds, "num_seeds")
  _checks.check_addressable("classification_accuracy_score", real=real,
                            generated=generated, test=test)
  _check_inputs(real, "real", None, recipe)
  shape = np.shape(real)[1:]
  _check_inputs(generated, "generated", shape, recipe)
  _check_inputs(test, "test", shape, recipe)
  num_classes = int(num_classes) or int(max(np.max(real_labels),
                                            np.max(test_labels))) + 1
  if num_classes < 2:
    raise ValueError(f"`num_classes` must be at least 2; got {num_classes}.")
  real_labels = _checks.check_class_labels(
      real_labels, "real_labels", len(real), num_classes)
  generated_labels = _checks.check_class_labels(
      generated_labels, "generated_labels", len(generated), num_classes)
  test_labels = _checks.check_class_labels(
      test_labels, "test_labels", len(test), num_classes)
  for name, labels in (("real_labels", real_labels),
                       ("test_labels", test_labels)):
    empty = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
    if empty.size:
      raise ValueError(f"classes {empty.tolist()} are empty in `{name}`; "
                       "every class needs real training and test examples "
                       "(or lower num_classes).")
  if not 1 <= top_k < num_classes:
    raise ValueError(f"`top_k` must be in [1, {num_classes}); got {top_k}.")
  nas_fractions = tuple(float(f) for f in nas_fractions)
  if any(f <= 0 for f in nas_fractions):
    raise ValueError(f"`nas_fractions` must be > 0; got {nas_fractions}.")
  missing = np.bincount(generated_labels, minlength=num_classes) == 0
  if missing.all():
    raise ValueError("`generated` has no sample of any class.")
  return (shape, num_classes, (real_labels, generated_labels, test_labels),
          nas_fractions, missing)


def _training_sets(key, real_labels, generated_labels, *, num_seeds,
                   nas_fractions, recipe):
  """The (T, S) training sets' rows of the pool and their minibatch rows.

  Rows [0, n_r) of the pool are the real examples, the rest the generated
  ones; set 0 is real, set 1 the label-matched generated set, then one
  real + generated set per NAS fraction (host RNG seeded from `key`).

  Returns:
    (counts (T, S), train_rows (T, S, N_max), batches (T, S, steps, batch)).
  """
  n_r = len(real_labels)
  real_rows = np.arange(n_r)
  sets = [[] for _ in range(2 + len(nas_fractions))]
  for s in range(num_seeds):
    rng = digits_net.host_rng(key, s)
    sets[0].append(real_rows)
    sets[1].append(n_r + match_labels(rng, real_labels, generated_labels))
    for i, f in enumerate(nas_fractions):
      chosen = rng.choice(n_r, size=min(int(round(f * n_r)), n_r),
                          replace=int(round(f * n_r)) > n_r)
      extra = match_labels(rng, real_labels[chosen], generated_labels)
      sets[2 + i].append(np.concatenate([real_rows, n_r + extra]))
  counts = np.array([[len(r) for r in rows] for rows in sets], np.int32)
  train_rows = np.zeros(counts.shape + (cas_training.bucket(counts.max()),),
                        np.int32)
  batches = np.zeros(counts.shape + (recipe.steps, recipe.batch_size),
                     np.int32)
  for t, rows in enumerate(sets):
    for s, r in enumerate(rows):
      train_rows[t, s, :len(r)] = r
      # The same positions for every set of a seed: paired minibatch streams.
      pos = digits_net.host_rng(key, s, 1).random((recipe.steps,
                                                   recipe.batch_size))
      batches[t, s] = r[np.minimum((pos * len(r)).astype(int), len(r) - 1)]
  return counts, train_rows, batches


def classification_accuracy_score(
    real, generated, *, real_labels, generated_labels, test, test_labels,
    key: jax.Array, num_classes: int = 0, num_seeds: int = 3, top_k: int = 2,
    nas_fractions: Sequence[float] = (0.25, 0.5, 1.0),
    recipe: cas_training.Recipe = cas_training.Recipe()) -> CASResult:
  """Classification Accuracy Score of labelled generated samples.

  CAS = acc(f_gen on real test), f_gen trained by `recipe` on a generated
  set that replaces each real training example by a generated sample of the
  same class; reported with Real = acc(f_real) of the same recipe trained on
  `real`, gap = Real - CAS, top-k, per-class accuracies (classes at 0%
  flagged) and the naive augmentation score NAS(f) = acc(f trained on real
  plus generated samples matched to a random f-share of the real examples).
  Test accuracy is plain accuracy over the test rows (the paper's
  top-1/top-5); top-k with k=2 suits 10 classes.

  Host side (numpy, seeded from `key`): validation, the label-matched
  training sets and every minibatch's rows; device side: one jit-compiled
  program, free of RNG, that trains all (2 + len(nas_fractions)) x num_seeds
  classifiers under `vmap` (sizes are padded to multiples of 256 so calls of
  similar size reuse the compiled program).

  Inputs: array-likes and integer arrays are cast to float32; values
  beyond float32's safe range for squared distances and products,
  |x| > 7.2e16 / sqrt(d), raise ValueError.
  Labels must be integers in [0, num_classes), one per row, every class
  present in the real and test labels (else ValueError).

  Args:
    real: (n_r, ...) real training inputs (images (n, H, W) or features).
    generated: (n_g, ...) generated inputs, same trailing shape as `real`.
    real_labels: (n_r,) int labels in [0, num_classes).
    generated_labels: (n_g,) the classes they were generated for.
    test: (n_t, ...) real held-out inputs, never seen by the generator or
      by `real`'s classifier.
    test_labels: (n_t,) their labels; every class must occur.
    key: jax.random key (label matching, initialisation, minibatches).
    num_classes: C; 0 infers max(real_labels, test_labels) + 1.
    num_seeds: classifiers per training set, trained in one vmap.
    top_k: k of the top-k accuracy, < C.
    nas_fractions: generated share (of n_r) added for each NAS row;
      () skips NAS.
    recipe: the classifier recipe, identical for every training set.

  Returns:
    A `CASResult`.

  Raises:
    ValueError: mismatched input shapes, labels out of range, a class
      absent from `real` or `test`, non-finite inputs, bad hyperparameters.

  References:
    Ravuri & Vinyals, "Classification Accuracy Score for Conditional
    Generative Models", NeurIPS 2019 (arXiv 1905.10887): label-matched
    synthetic training set, same recipe as Real, top-1/top-5, per-class
    accuracy, NAS. Differences: a small MLP/CNN trained for a fixed number
    of steps instead of ResNet-50 for 90 epochs, several seeds for error
    bars, top-2 by default.
  """
  shape, num_classes, labels, nas_fractions, missing = _validate(
      real, generated, test, real_labels, generated_labels, test_labels,
      num_classes=num_classes, num_seeds=num_seeds, top_k=top_k,
      nas_fractions=nas_fractions, recipe=recipe)
  real_labels, generated_labels, test_labels = labels
  counts, train_rows, batches = _training_sets(
      key, real_labels, generated_labels, num_seeds=num_seeds,
      nas_fractions=nas_fractions, recipe=recipe)
  n_r = len(real)
  n_pool = cas_training.bucket(n_r + len(generated))
  pool = np.zeros((n_pool,) + tuple(shape), np.float32)
  pool[:n_r], pool[n_r:n_r + len(generated)] = real, generated
  pool_labels = np.zeros((n_pool,), np.int32)
  pool_labels[:n_r] = real_labels
  pool_labels[n_r:n_r + len(generated)] = generated_labels
  params = cas_training.init_params(recipe, num_classes, shape,
                                    [digits_net.host_rng(key, s, 2)
                                     for s in range(num_seeds)])
  outs = cas_training.train_and_score(
      params, jnp.asarray(pool), jnp.asarray(pool_labels),
      jnp.asarray(test, jnp.float32), jnp.asarray(test_labels),
      jnp.asarray(batches), jnp.asarray(train_rows), jnp.asarray(counts),
      recipe=recipe, num_classes=num_classes, top_k=int(top_k))
  top1, topk, per_class, train_acc, final, ok = (np.asarray(a) for a in outs)

  # Summaries in numpy on the host (as JAX ops, ~15 small programs).
  ddof = 1 if num_seeds > 1 else 0
  std = lambda a: np.std(a, axis=-1, ddof=ddof)
  gaps = top1[0] - top1[1]
  return jax.tree.map(jnp.asarray, CASResult(
      cas=top1[1].mean(), cas_std=std(top1[1]), cas_topk=topk[1].mean(),
      real_cas=top1[0].mean(), real_std=std(top1[0]),
      real_topk=topk[0].mean(), gap=gaps.mean(), gap_std=std(gaps),
      top1=top1[1], topk=topk[1], real_top1=top1[0],
      per_class=per_class[1], real_per_class=per_class[0],
      per_class_gap=per_class[0].mean(0) - per_class[1].mean(0),
      zero_classes=np.all(per_class[1] == 0, axis=0),
      missing_classes=np.asarray(missing),
      nas=top1[2:].mean(-1), nas_std=std(top1[2:]), nas_top1=top1[2:],
      train_accuracy=train_acc, final_loss=final, converged=np.all(ok),
      num_train=np.asarray(counts[:, 0]), top_k=int(top_k),
      num_classes=num_classes, nas_fractions=nas_fractions))
