"""Classification Accuracy Score: closed forms, digits behaviour, bad inputs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cas as cas_config
from gendiag import classification_accuracy_score
from gendiag import CASResult
from gendiag.data.inputs import EvalInputs
from gendiag.data import digits
from gendiag.experiments import cas as cas_experiment
from gendiag.report.families import cas as cas_family
from gendiag.metrics import cas
from gendiag.metrics import cas_training

SMALL = cas_training.Recipe(hidden=(16,), steps=60, batch_size=32,
                            learning_rate=1e-2)


def _corners(rng, n_per_class, noise=0.05):
  """4 classes at the corners of a square: perfectly separable 2-D data."""
  centres = np.array([[-3, -3], [-3, 3], [3, -3], [3, 3]], np.float32)
  labels = np.repeat(np.arange(4), n_per_class).astype(np.int32)
  x = centres[labels] + noise * rng.normal(size=(len(labels), 2))
  return np.float32(x), labels


@pytest.fixture(scope="module")
def corners():
  rng = np.random.default_rng(0)
  return _corners(rng, 20), _corners(rng, 15), _corners(rng, 25)


def test_scores_match_numpy(rng):
  logits = rng.normal(size=(200, 5))
  labels = rng.integers(0, 5, 200)
  top1, top2, per_class = cas_training.scores(jnp.asarray(logits), jnp.asarray(labels),
                                              top_k=2, num_classes=5)
  order = np.argsort(-logits, axis=1)
  assert float(top1) == pytest.approx(np.mean(order[:, 0] == labels))
  assert float(top2) == pytest.approx(
      np.mean((order[:, 0] == labels) | (order[:, 1] == labels)))
  for c in range(5):
    assert float(per_class[c]) == pytest.approx(
        np.mean(order[labels == c, 0] == c))


def test_match_labels_reproduces_the_real_label_histogram(rng):
  wanted = np.repeat(np.arange(3), [5, 7, 3])
  available = np.repeat(np.arange(3), [10, 4, 6])
  idx = cas.match_labels(rng, wanted, available)
  np.testing.assert_array_equal(np.bincount(available[idx]), [5, 7, 3])
  assert len(set(idx[available[idx] == 0].tolist())) == 5  # no repeats
  assert len(set(idx[available[idx] == 1].tolist())) == 4  # all 4, cycled
  missing = cas.match_labels(rng, wanted, np.repeat([0, 2], [10, 6]))
  assert set(np.repeat([0, 2], [10, 6])[missing].tolist()) == {0, 2}
  assert len(missing) == 8


def test_separable_data_scores_one_and_swapped_labels_zero(corners):
  (xr, yr), (xg, yg), (xt, yt) = corners
  res = classification_accuracy_score(
      xr, xg, real_labels=yr, generated_labels=yg, test=xt, test_labels=yt,
      key=jax.random.key(0),
      num_seeds=2, nas_fractions=(0.5,), recipe=SMALL)
  assert isinstance(res, CASResult)
  assert float(res.cas) == 1.0 and float(res.real_cas) == 1.0
  assert float(res.gap) == 0.0 and not np.any(res.zero_classes)
  np.testing.assert_array_equal(res.num_train, [80, 80, 120])
  assert bool(res.converged)
  swapped = classification_accuracy_score(
      xr, xg, real_labels=yr, generated_labels=(yg + 1) % 4, test=xt,
      test_labels=yt,
      key=jax.random.key(0), num_seeds=2, nas_fractions=(0.5,), recipe=SMALL)
  assert float(swapped.cas) == 0.0 and np.all(swapped.zero_classes)
  assert float(swapped.gap) == 1.0
  # The real reference row does not depend on the generated data (paired).
  np.testing.assert_array_equal(swapped.real_top1, res.real_top1)
  json.dumps(res.to_dict())  # JSON-ready
  assert len(jax.tree.leaves(res)) > 10  # a pytree


def test_seeds_are_reproducible_and_vmap_equals_one_seed(corners):
  (xr, yr), (xg, yg), (xt, yt) = corners
  noisy = xg + np.float32(np.random.default_rng(1).normal(
      size=xg.shape) * 3.0)
  kwargs = dict(test=xt, test_labels=yt, nas_fractions=(0.5,), recipe=SMALL)
  a = classification_accuracy_score(xr, noisy, real_labels=yr,
                                    generated_labels=yg, key=jax.random.key(5),
                                    num_seeds=2, **kwargs)
  b = classification_accuracy_score(xr, noisy, real_labels=yr,
                                    generated_labels=yg, key=jax.random.key(5),
                                    num_seeds=2, **kwargs)
  assert a.to_dict() == b.to_dict()
  one = classification_accuracy_score(xr, noisy, real_labels=yr,
                                      generated_labels=yg,
                                      key=jax.random.key(5), num_seeds=1,
                                      **kwargs)
  # Seed s depends only on (key, s): the vmapped run's first seed is the
  # single-seed run.
  np.testing.assert_allclose(a.final_loss[:, 0], one.final_loss[:, 0],
                             rtol=1e-4)
  np.testing.assert_allclose(a.per_class[0], one.per_class[0], atol=1e-6)
  assert float(one.cas_std) == 0.0
  assert not np.array_equal(a.final_loss[:, 0], a.final_loss[:, 1])


def test_scores_jit_equals_eager(rng):
  logits = jnp.asarray(rng.normal(size=(50, 4)))
  labels = jnp.asarray(rng.integers(0, 4, 50))
  fn = lambda a, b: cas_training.scores(a, b, top_k=2, num_classes=4)
  with jax.disable_jit():
    eager = fn(logits, labels)
  for x, y in zip(jax.jit(fn)(logits, labels), eager):
    np.testing.assert_allclose(x, y, atol=1e-7)


@pytest.fixture(scope="module")
def digit_halves():
  """Two disjoint halves of the digits training split, and the test split."""
  data = digits.load()
  train_idx, test_idx = digits.train_test()
  parts = digits.split(data.labels[train_idx], {"a": 0.5, "b": 0.5},
                       key=jax.random.key(1))
  return (data.take(train_idx[parts["a"]]), data.take(train_idx[parts["b"]]),
          data.take(test_idx))


def test_held_out_real_digits_score_like_the_real_reference(digit_halves):
  """A "generator" returning unseen real digits: CAS = Real within noise."""
  a, b, test = digit_halves
  res = classification_accuracy_score(
      a.images, b.images, real_labels=a.labels, generated_labels=b.labels,
      test=test.images,
      test_labels=test.labels, key=jax.random.key(0), num_seeds=3,
      nas_fractions=(1.0,))
  assert float(res.real_cas) > 0.93
  assert abs(float(res.gap)) < 0.02
  assert abs(float(res.gap)) <= 3 * float(res.gap_std) / np.sqrt(3) + 0.01
  assert not np.any(res.zero_classes) and bool(res.converged)
  assert np.all(np.asarray(res.train_accuracy) > 0.95)


def test_dropped_classes_score_zero_on_exactly_those(digit_halves):
  a, b, test = digit_halves
  keep = ~np.isin(b.labels, [3, 8])
  res = classification_accuracy_score(
      a.images, b.images[keep], real_labels=a.labels,
      generated_labels=b.labels[keep], test=test.images,
      test_labels=test.labels, key=jax.random.key(0), num_seeds=3,
      nas_fractions=(1.0,))
  per_class = np.asarray(res.per_class)
  np.testing.assert_array_equal(per_class[:, [3, 8]], 0.0)
  assert per_class[:, keep_classes()].mean(0).min() > 0.85
  assert np.flatnonzero(res.zero_classes).tolist() == [3, 8]
  assert np.flatnonzero(res.missing_classes).tolist() == [3, 8]
  assert float(res.gap) > 0.15
  assert int(res.num_train[1]) == int(np.sum(~np.isin(a.labels, [3, 8])))


def keep_classes():
  return [c for c in range(10) if c not in (3, 8)]


def test_cnn_recipe_rejects_flat_inputs(digit_halves):
  a, b, test = digit_halves
  with pytest.raises(ValueError, match="cnn recipe"):
    classification_accuracy_score(
        a.images.reshape(len(a), 64), b.images.reshape(len(b), 64),
        real_labels=a.labels, generated_labels=b.labels,
        test=test.images.reshape(len(test), 64),
        test_labels=test.labels, key=jax.random.key(0),
        recipe=cas_training.Recipe("cnn", (4, 8)))
  with pytest.raises(ValueError, match="architecture"):
    cas_training.Recipe("resnet")
  with pytest.raises(ValueError, match="two channel counts"):
    cas_training.Recipe("cnn", (8,))


@pytest.mark.slow
def test_cnn_recipe_trains_on_images(digit_halves):
  a, b, test = digit_halves
  recipe = cas_training.Recipe("cnn", (8, 16), steps=300, batch_size=32)
  res = classification_accuracy_score(
      a.images, b.images, real_labels=a.labels, generated_labels=b.labels,
      test=test.images,
      test_labels=test.labels, key=jax.random.key(0), num_seeds=2,
      nas_fractions=(), recipe=recipe)
  assert float(res.real_cas) > 0.8 and abs(float(res.gap)) < 0.05


def _bad(corners, **override):
  (xr, yr), (xg, yg), (xt, yt) = corners
  args = dict(real=xr, real_labels=yr, generated=xg, generated_labels=yg,
              test=xt, test_labels=yt)
  args.update(override)
  return lambda: classification_accuracy_score(
      args.pop("real"), args.pop("generated"),
      real_labels=args.pop("real_labels"),
      generated_labels=args.pop("generated_labels"), key=jax.random.key(0),
      recipe=SMALL,
      **args)


@pytest.mark.parametrize("override, match", [
    (dict(generated_labels=np.full(60, 4)), r"outside \[0, 4\)"),
    (dict(real_labels=-np.ones(80, int)), "outside"),
    (dict(generated_labels=np.zeros(60)), "integer class labels"),
    (dict(generated_labels=np.zeros(59, int)), "one label per row"),
    (dict(generated=np.zeros((60, 3), np.float32)), "inputs of shape"),
    (dict(test=np.zeros((100, 2, 1), np.float32)), "inputs of shape"),
    (dict(test_labels=np.repeat([0, 1, 3, 3], 25)), r"classes \[2\] are empty"),
    (dict(real_labels=np.repeat([0, 0, 2, 3], 20)), "empty in `real_labels`"),
    (dict(generated=np.full((60, 2), np.nan, np.float32)), "NaN"),
    (dict(top_k=4), "top_k"),
    (dict(nas_fractions=(0.0,)), "nas_fractions"),
    (dict(num_seeds=0), "num_seeds"),
    (dict(real=np.zeros(80, np.float32)), r"\(n, \.\.\.\)"),
])
def test_bad_inputs_raise(corners, override, match):
  with pytest.raises(ValueError, match=match):
    _bad(corners, **override)()


def test_report_family_on_features_flags_the_dropped_model(corners):
  (xr, yr), (xg, yg), _ = corners
  keep = yg != 2
  inputs = EvalInputs(
      real=np.concatenate([xr, xr + 0.01]), real_labels=np.tile(yr, 2),
      generated={"good": xg, "dropped": xg[keep], "unlabelled": xg},
      generated_labels={"good": yg, "dropped": yg[keep]},
      config={"cas": dict(num_seeds=2, steps=60, hidden=(16,), batch_size=32,
                          nas_fractions=(), learning_rate=1e-2)})
  out = cas_family.cas_family(inputs, jax.random.key(0))
  assert set(out.metrics) == {"good", "dropped"}
  assert out.metrics["good"]["cas"]["value"] == 1.0
  assert out.metrics["dropped"]["cas"]["zero_classes"] == [2]
  assert "class 2" in out.findings["dropped"][0]
  assert "good" not in out.findings
  assert any("unlabelled" in n for n in out.notes)
  assert any("CAS on features" in n for n in out.notes)
  assert {"cas_per_class.png", "cas.png"} <= set(out.figures)
  assert "| dropped |" in out.sections[0]


def test_experiment_smoke_config_end_to_end(tmp_path):
  metrics = cas_experiment.run(cas_config.get_config("smoke"),
                               str(tmp_path))
  models = metrics["models"]
  assert set(models) == {"good", "dropped", "imbalanced", "blurred",
                         "memorized", "shrunk"}
  assert models["dropped"]["cas"]["zero_classes"] == [3, 8]
  assert models["dropped"]["cas_gap"]["value"] > 0.1
  assert "nas_50%" in models["good"]
  assert (tmp_path / "cas_per_class.png").stat().st_size > 1000
  text = (tmp_path / "report.md").read_text()
  assert "Per-class CAS" in text and "| real (reference) |" in text
