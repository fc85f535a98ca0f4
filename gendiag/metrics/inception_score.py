"""Inception Score from classifier logits, in each peer's split convention.

With p_i = softmax(logits_i) and, for a split S of the rows,
p_bar = mean_{i in S} p_i,

  IS_S = exp( mean_{i in S} sum_c p_ic (log p_ic - log p_bar_c) ),

the exponentiated mean KL divergence from each sample's class distribution
to the split's marginal. It lies in [1, C] for C classes: 1 when every
sample has the same class distribution, C when the samples are confidently
classified and spread evenly over the classes. The peers differ only in how
they split the rows and what they report:

  convention       splits                                   reported
  torch_fidelity   10, rows [i N / 10, (i + 1) N / 10) of   mean, std (ddof 0)
                   np.random.RandomState(2020).permutation(N)
  improved_gan     10, the same rows, no shuffle            mean, std (ddof 0)
                   (StyleGAN2-ADA / StyleGAN3 compute the same)
  adm              consecutive chunks of 5000 rows, the     mean only
                   last one possibly short

(integer division: the split bounds are floor(i N / 10)). All are computed
here in one jitted program in float32 (float64 inputs with x64 enabled), with
log p from `log_softmax`: torch-fidelity's float64 `log_softmax` and the
others' `np.log` of float32 softmax outputs agree with it to about 1e-6
relative, except that a probability that underflows to 0 makes their
`np.log` give NaN where this gives the limit 0 log 0 = 0.

The logits must be the unbiased ones, pool3 @ W without the classifier's
bias: improved-gan, the ADM evaluator, StyleGAN, torch-fidelity and
torchmetrics all drop the bias (gendiag's Inception gives them as
`logits_unbiased`; with the bias IS differs). Log-probabilities work as
well (softmax(log p) = p); probabilities do not and raise ValueError.

IS is biased in the split size and is not comparable across conventions or
sample sizes; it needs no real data and says nothing about how close the
samples are to it (see FID and precision/recall for that).

References:
  Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen, "Improved
  Techniques for Training GANs", NeurIPS 2016 (IS; openai/improved-gan).
  Barratt & Sharma, "A Note on the Inception Score", 2018.
  Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis",
  NeurIPS 2021 (the ADM evaluator, openai/guided-diffusion).
  Obukhov et al., torch-fidelity (metric_isc).
"""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results

CONVENTIONS = ("torch_fidelity", "improved_gan", "adm")
DEFAULT_SPLITS = 10
ADM_CHUNK_SIZE = 5000
TORCH_FIDELITY_SEED = 2020


@_results.result(static=("convention", "num_samples"))
class InceptionScoreResult:
  """The Inception Score and its per-split scores.

  Attributes:
    mean: the Inception Score, the mean of `split_scores` (the number each
      convention reports).
    std: np.std (ddof 0) of `split_scores`, torch-fidelity's and
      improved-gan's "std". The ADM evaluator reports `mean` only; its std
      here is the spread of its 5000-row chunk scores, and it is 0 by
      definition with a single split (n <= 5000), which measures nothing.
    split_scores: (num_splits,) IS of each split, in split order.
    convention: "torch_fidelity", "improved_gan" or "adm".
    num_samples: rows scored.
  """
  mean: jax.Array
  std: jax.Array
  split_scores: jax.Array
  convention: str
  num_samples: int


@jax.jit
def _split_scores(logits, index, mask):
  """(k,) IS of each split: its rows are logits[index[s]] where mask[s].

  The rows are gathered into a padded (k, m, C) block so that the sums over
  rows are XLA reductions, which stay accurate in float32 over 50k rows (a
  scatter-add, `segment_sum`, accumulates in order and drifts by ~1e-5
  relative at 5000 rows).
  """
  log_p = jax.nn.log_softmax(logits, axis=1)[index]
  weight = mask.astype(log_p.dtype)
  p = jnp.exp(log_p) * weight[:, :, None]
  rows = jnp.sum(weight, axis=1)
  p_bar = jnp.sum(p, axis=1) / rows[:, None]
  log_p_bar = jnp.log(jnp.where(p_bar > 0, p_bar, 1.0))[:, None, :]
  # 0 log 0 = 0: padding and probabilities that underflowed contribute
  # nothing (p_bar is 0 only where every p of its split is).
  kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_p_bar), 0.0), axis=2)
  return jnp.exp(jnp.sum(kl * weight, axis=1) / rows)


def _padded_splits(split_of_row: np.ndarray):
  """(index (k, m), mask (k, m)): the rows of each split, padded with row 0."""
  order = np.argsort(split_of_row, kind="stable")
  sizes = np.bincount(split_of_row)
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  slot = np.arange(sizes.max())
  mask = slot[None, :] < sizes[:, None]
  index = np.where(mask, order[np.minimum(starts[:, None] + slot[None, :],
                                          len(order) - 1)], 0)
  return index.astype(np.int32), mask


def split_assignment(num_samples: int, convention: str, *,
                     splits: Optional[int] = None,
                     chunk_size: Optional[int] = None) -> np.ndarray:
  """(n,) split index of each row under `convention` (see the module doc).

  Args:
    num_samples: n, the number of rows.
    convention: one of `CONVENTIONS`.
    splits: number of splits (torch_fidelity, improved_gan; default 10).
    chunk_size: rows per chunk (adm; default 5000).

  Returns:
    int32 split ids in [0, num_splits).
  """
  if convention not in CONVENTIONS:
    raise ValueError(f"convention must be one of {CONVENTIONS}; got "
                     f"{convention!r}.")
  if convention == "adm":
    if splits is not None:
      raise ValueError("the adm convention splits into consecutive chunks of "
                       "`chunk_size` rows (default 5000); pass chunk_size, "
                       "not splits.")
    size = ADM_CHUNK_SIZE if chunk_size is None else chunk_size
    _checks.check_positive_int(size, "chunk_size")
    return (np.arange(num_samples) // size).astype(np.int32)
  if chunk_size is not None:
    raise ValueError(f"the {convention} convention splits into `splits` "
                     "equal parts (default 10); pass splits, not chunk_size.")
  k = DEFAULT_SPLITS if splits is None else splits
  _checks.check_positive_int(k, "splits")
  if num_samples < k:
    raise ValueError(f"`logits` has {num_samples} rows but splits={k}; each "
                     "split needs a row: pass more samples or fewer splits.")
  position = np.arange(num_samples)
  # Row at position j of the (shuffled) order is in split s iff
  # floor(s n / k) <= j < floor((s + 1) n / k).
  bounds = (np.arange(1, k) * num_samples) // k
  split_of_position = np.searchsorted(bounds, position, side="right")
  if convention == "improved_gan":
    return split_of_position.astype(np.int32)
  order = np.random.RandomState(TORCH_FIDELITY_SEED).permutation(num_samples)
  split_of_row = np.empty(num_samples, np.int32)
  split_of_row[order] = split_of_position  # row order[j] sits at position j
  return split_of_row


def _check_logits(logits):
  logits = _checks.check_features(logits, "logits", min_rows=1)
  if np.shape(logits)[1] < 2:
    raise ValueError(f"`logits` must have one column per class (>= 2); got "
                     f"shape {np.shape(logits)}.")
  if _checks.is_concrete(logits):
    rows = np.asarray(logits[:64], np.float64)
    if np.all(rows >= 0) and np.allclose(rows.sum(1), 1.0, atol=1e-4):
      raise ValueError(
          "`logits` rows are probability vectors (non-negative, summing to "
          "1); pass the logits or log-probabilities (e.g. np.log(p)), not "
          "the softmax output.")
  return logits


def inception_score(logits: jax.Array, *, convention: str = "torch_fidelity",
                    splits: Optional[int] = None,
                    chunk_size: Optional[int] = None
                    ) -> InceptionScoreResult:
  """Inception Score of (n, C) unbiased classifier logits.

  Args:
    logits: (n, C) logits without the classifier bias (for the FID
      Inception, pool3 @ W: `logits_unbiased`), or log-probabilities.
    convention: "torch_fidelity" (10 splits of a fixed shuffle, seed 2020),
      "improved_gan" (10 consecutive splits; StyleGAN's too) or "adm"
      (consecutive chunks of 5000 rows, mean only); see the module doc.
    splits: number of splits for torch_fidelity / improved_gan (default 10;
      n >= splits).
    chunk_size: rows per chunk for adm (default 5000).

  Returns:
    An `InceptionScoreResult`; `.mean` is the score each peer reports.
  """
  _checks.check_addressable("inception_score", logits=logits)
  logits = _check_logits(logits)
  n = int(np.shape(logits)[0])
  split_of_row = split_assignment(n, convention, splits=splits,
                                  chunk_size=chunk_size)
  index, mask = _padded_splits(split_of_row)
  scores = _split_scores(jnp.asarray(logits), index, mask)
  return InceptionScoreResult(mean=jnp.mean(scores), std=jnp.std(scores),
                              split_scores=scores, convention=convention,
                              num_samples=n)
