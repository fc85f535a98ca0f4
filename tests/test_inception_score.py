"""Inception Score: each convention against a float64 numpy transcription,
closed forms, and how each convention treats the order of the rows."""

import jax
import numpy as np
import pytest

from gendiag.metrics import inception_score as is_lib


def _np_split_score(logits):
  """exp(mean_i KL(p_i || p_bar)) of one split, float64, from the formula."""
  x = np.asarray(logits, np.float64)
  shifted = x - x.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  p = np.exp(log_p)
  p_bar = p.mean(axis=0, keepdims=True)
  return np.exp(np.mean(np.sum(p * (log_p - np.log(p_bar)), axis=1)))


def np_torch_fidelity(logits, splits=10):
  """torch-fidelity: RandomState(2020) shuffle, rows [iN/k, (i+1)N/k)."""
  n = len(logits)
  x = np.asarray(logits)[np.random.RandomState(2020).permutation(n)]
  scores = [_np_split_score(x[i * n // splits:(i + 1) * n // splits])
            for i in range(splits)]
  return np.mean(scores), np.std(scores), scores


def np_improved_gan(logits, splits=10):
  """improved-gan / StyleGAN: the same slicing without a shuffle."""
  n = len(logits)
  scores = [_np_split_score(logits[i * n // splits:(i + 1) * n // splits])
            for i in range(splits)]
  return np.mean(scores), np.std(scores), scores


def np_adm(logits, chunk=5000):
  """ADM evaluator: consecutive chunks of 5000 rows, the mean."""
  scores = [_np_split_score(logits[i:i + chunk])
            for i in range(0, len(logits), chunk)]
  return np.mean(scores), scores


def _logits(rng, n, c, scale=3.0):
  return np.float32(rng.normal(size=(n, c)) * scale
                    + rng.normal(size=(1, c)) * 2.0)


@pytest.mark.parametrize("n", [1003, 50])
def test_torch_fidelity_matches_numpy(rng, n):
  logits = _logits(rng, n, 17)
  mean, std, scores = np_torch_fidelity(logits)
  res = is_lib.inception_score(logits)
  assert res.convention == "torch_fidelity" and res.num_samples == n
  np.testing.assert_allclose(res.split_scores, scores, rtol=1e-5)
  np.testing.assert_allclose(res.mean, mean, rtol=1e-5)
  np.testing.assert_allclose(res.std, std, rtol=1e-4)
  assert float(res.mean) > 1.5  # not a trivial score


def test_improved_gan_matches_numpy_with_other_splits(rng):
  logits = _logits(rng, 997, 11)
  for splits in (10, 3, 1):
    mean, std, scores = np_improved_gan(logits, splits)
    res = is_lib.inception_score(logits, convention="improved_gan",
                                 splits=splits)
    np.testing.assert_allclose(res.split_scores, scores, rtol=1e-5)
    np.testing.assert_allclose(res.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(res.std, std, rtol=1e-4, atol=1e-6)


def test_adm_matches_numpy_with_a_short_last_chunk(rng):
  logits = _logits(rng, 10_300, 9)
  mean, scores = np_adm(logits)
  res = is_lib.inception_score(logits, convention="adm")
  assert len(scores) == 3 and res.split_scores.shape == (3,)
  np.testing.assert_allclose(res.split_scores, scores, rtol=1e-5)
  np.testing.assert_allclose(res.mean, mean, rtol=1e-5)
  small = is_lib.inception_score(logits[:40], convention="adm", chunk_size=16)
  np.testing.assert_allclose(small.split_scores,
                             np_adm(logits[:40], 16)[1], rtol=1e-5)


def test_torch_fidelity_against_torch(rng):
  """torch's float64 log_softmax, the way torch-fidelity computes it."""
  torch = pytest.importorskip("torch")
  logits = _logits(rng, 230, 13, scale=6.0)
  n = len(logits)
  x = torch.from_numpy(logits[np.random.RandomState(2020).permutation(n)])
  x = x.double()
  p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
  scores = []
  for i in range(10):
    rows = slice(i * n // 10, (i + 1) * n // 10)
    q = p[rows].mean(dim=0, keepdim=True)
    kl = (p[rows] * (log_p[rows] - torch.log(q))).sum(dim=1).mean()
    scores.append(kl.exp().item())
  res = is_lib.inception_score(logits)
  np.testing.assert_allclose(res.split_scores, scores, rtol=1e-5)
  np.testing.assert_allclose(res.mean, np.mean(scores), rtol=1e-5)


@pytest.mark.parametrize("convention", is_lib.CONVENTIONS)
def test_uniform_logits_score_one(convention):
  res = is_lib.inception_score(np.full((200, 7), 3.5, np.float32),
                               convention=convention)
  np.testing.assert_allclose(res.split_scores, 1.0, atol=1e-6)
  np.testing.assert_allclose(res.std, 0.0, atol=1e-6)


def test_confident_classes_spread_evenly_score_num_classes():
  classes, per_split = 8, 5
  labels = np.arange(10 * classes * per_split) % classes
  logits = np.float32(60.0 * np.eye(classes)[labels])
  res = is_lib.inception_score(logits, convention="improved_gan")
  np.testing.assert_allclose(res.split_scores, classes, rtol=1e-6)
  adm = is_lib.inception_score(logits, convention="adm")
  np.testing.assert_allclose(adm.mean, classes, rtol=1e-6)


@pytest.mark.parametrize("convention", is_lib.CONVENTIONS)
def test_confident_samples_score_exp_entropy_of_class_counts(convention):
  """For one-hot-confident rows IS_S = exp(H(class frequencies of S))."""
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 6, size=300)
  logits = np.float32(60.0 * np.eye(6)[labels])
  res = is_lib.inception_score(logits, convention=convention, **(
      {"chunk_size": 70} if convention == "adm" else {}))
  split = is_lib.split_assignment(300, convention, **(
      {"chunk_size": 70} if convention == "adm" else {}))
  for s, score in enumerate(np.asarray(res.split_scores)):
    freq = np.bincount(labels[split == s], minlength=6) / np.sum(split == s)
    freq = freq[freq > 0]
    np.testing.assert_allclose(score, np.exp(-np.sum(freq * np.log(freq))),
                               rtol=1e-5)


def test_order_of_rows_per_convention(rng):
  logits = _logits(rng, 400, 10)
  order = rng.permutation(400)
  # improved_gan: a permutation inside each split changes nothing; one that
  # moves rows between splits changes the split scores.
  base = is_lib.inception_score(logits, convention="improved_gan")
  within = np.concatenate([rng.permutation(np.arange(40 * s, 40 * (s + 1)))
                           for s in range(10)])
  np.testing.assert_allclose(
      is_lib.inception_score(logits[within], convention="improved_gan"
                             ).split_scores, base.split_scores, rtol=1e-6)
  moved = is_lib.inception_score(logits[order], convention="improved_gan")
  assert not np.allclose(moved.split_scores, base.split_scores, rtol=1e-3)
  reversed_ = is_lib.inception_score(logits[::-1], convention="improved_gan")
  np.testing.assert_allclose(reversed_.split_scores, base.split_scores[::-1],
                             rtol=1e-6)
  # torch_fidelity = improved_gan on the rows in RandomState(2020)'s order.
  perm = np.random.RandomState(2020).permutation(400)
  np.testing.assert_allclose(
      is_lib.inception_score(logits).split_scores,
      is_lib.inception_score(logits[perm], convention="improved_gan"
                             ).split_scores, rtol=1e-6)
  # adm: one chunk (n <= 5000) is invariant to any order.
  np.testing.assert_allclose(
      is_lib.inception_score(logits[order], convention="adm").mean,
      is_lib.inception_score(logits, convention="adm").mean, rtol=1e-6)


def test_jit_and_to_dict(rng):
  logits = _logits(rng, 120, 5)
  eager = is_lib.inception_score(logits)
  jitted = jax.jit(lambda x: is_lib.inception_score(x))(logits)
  np.testing.assert_allclose(jitted.split_scores, eager.split_scores,
                             rtol=1e-6)
  d = eager.to_dict()
  assert d["convention"] == "torch_fidelity" and d["num_samples"] == 120
  assert len(d["split_scores"]) == 10 and isinstance(d["mean"], float)


def test_log_probabilities_give_the_same_score(rng):
  logits = _logits(rng, 100, 6)
  log_p = jax.nn.log_softmax(logits, axis=1)
  np.testing.assert_allclose(is_lib.inception_score(log_p).mean,
                             is_lib.inception_score(logits).mean, rtol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(logits=np.ones((5, 4)), splits=10), "fewer splits"),
    (dict(logits=np.ones(8)), "2-D"),
    (dict(logits=np.ones((20, 1))), "one column per class"),
    (dict(logits=np.full((20, 3), np.nan)), "NaN"),
    (dict(logits=np.full((20, 4), 0.25)), "probability vectors"),
    (dict(logits=np.ones((20, 3)), convention="tf"), "convention must be"),
    (dict(logits=np.ones((20, 3)), convention="adm", splits=2), "chunk_size"),
    (dict(logits=np.ones((20, 3)), chunk_size=5), "pass splits"),
    (dict(logits=np.ones((20, 3)), splits=0), "splits"),
])
def test_bad_inputs_raise(kwargs, match):
  logits = kwargs.pop("logits")
  with pytest.raises(ValueError, match=match):
    is_lib.inception_score(logits, **kwargs)
