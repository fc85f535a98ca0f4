"""GEL class masses: dropped, imbalanced, missing classes; k-NN labels."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.data import synthetic
from gendiag.metrics.gel import modes as gel_modes


def test_bad_labels_raise():
  rng = np.random.default_rng(0)
  x = np.float32(rng.normal(size=(50, 3)))
  y = np.float32(rng.normal(size=(40, 3)))
  labels = np.zeros(50, np.int32)
  with pytest.raises(ValueError, match="real_labels"):
    gel_modes.gel_mode_probabilities(x, y, real_labels=labels[:5],
                                     moments="raw")
  with pytest.raises(ValueError, match="integer"):
    gel_modes.gel_mode_probabilities(x, y, real_labels=labels * 0.5,
                                     moments="raw")
  with pytest.raises(ValueError, match="num_classes"):
    gel_modes.gel_mode_probabilities(x, y, real_labels=labels + 3, moments="raw",
                                     num_classes=2)
  with pytest.raises(ValueError, match="generated_labels"):
    gel_modes.gel_mode_probabilities(x, y, real_labels=labels, moments="raw",
                                     generated_labels=labels)


def test_hellinger_closed_forms():
  a = jnp.asarray([0.5, 0.5, 0.0])
  assert float(gel_modes.hellinger(a, a)) == pytest.approx(0.0, abs=1e-6)
  assert float(gel_modes.hellinger(a, jnp.asarray([0.0, 0.0, 1.0]))) == (
      pytest.approx(1.0))
  # Unnormalised inputs are normalised: [1, 3] vs [2, 2].
  expected = np.sqrt(1 - (np.sqrt(0.25 * 0.5) + np.sqrt(0.75 * 0.5)))
  assert float(gel_modes.hellinger(jnp.asarray([1.0, 3.0]),
                                   jnp.asarray([2.0, 2.0]))) == (
                                       pytest.approx(expected, rel=1e-5))


@pytest.fixture(scope="module")
def mixture_models():
  keys = jax.random.split(jax.random.key(5), 6)
  mix = synthetic.make_mixture(keys[0], num_classes=5, dim=8, separation=8.0)
  real, real_labels = synthetic.sample_mixture(keys[1], mix, 1000)
  pool, pool_labels = synthetic.sample_mixture(keys[2], mix, 4000)
  witnesses, _ = synthetic.sample_mixture(keys[3], mix, 32)
  models = {
      "good": synthetic.imbalance_classes(keys[4], pool, pool_labels,
                                          np.ones(5), 1000),
      "dropped": synthetic.drop_classes(keys[4], pool, pool_labels, [3, 4],
                                        1000),
      "imbalanced": synthetic.imbalance_classes(
          keys[5], pool, pool_labels, [0.4, 0.3, 0.15, 0.1, 0.05], 1000),
  }
  x, lab = models["good"]
  models["shrunk"] = (synthetic.shrink(x, lab, factor=0.3), lab)
  run = lambda y, lab: gel_modes.gel_mode_probabilities(
      real, y, real_labels=np.asarray(real_labels), generated_labels=np.asarray(lab),
      witnesses=witnesses)
  return {name: run(*m) for name, m in models.items()}, (real, real_labels,
                                                         witnesses, models)


def test_class_masses_find_dropped_and_imbalanced_classes(mixture_models):
  res, _ = mixture_models
  good, dropped, imbalanced = res["good"], res["dropped"], res["imbalanced"]
  for r in res.values():
    assert int(r.one_sample_status) == int(r.two_sample_status) == 0
  assert float(good.hellinger_to_real) < 0.05
  assert not np.any(np.asarray(good.dropped))
  np.testing.assert_array_equal(np.asarray(dropped.dropped),
                                [False, False, False, True, True])
  # (present classes get ~1/3 each; J = 32 witnesses blur a little)
  assert float(jnp.sum(dropped.real_masses[3:])) < 0.03
  assert float(jnp.sum(dropped.two_sample_real_masses[3:])) < 0.05
  assert float(jnp.sum(dropped.two_sample_generated_masses[3:])) == 0.0
  assert float(dropped.hellinger_to_gold) < 0.15
  assert float(dropped.hellinger_to_real) > 0.3
  # Imbalance: the masses recover the generated mix, far from the real one.
  assert float(imbalanced.hellinger_to_generated) < 0.05
  assert float(imbalanced.hellinger_to_real) > 4 * float(
      imbalanced.hellinger_to_generated)
  # Within-class diversity: a shrunk model's classes diverge more.
  assert np.all(np.asarray(res["shrunk"].class_divergence)
                > 2 * np.asarray(good.class_divergence))
  assert np.all(np.asarray(res["shrunk"].class_ess)
                < np.asarray(good.class_ess))
  assert np.all(np.isinf(np.asarray(dropped.class_divergence)[3:]))


def test_generated_labels_from_the_knn_classifier(mixture_models):
  res, (real, real_labels, witnesses, models) = mixture_models
  y, lab = models["dropped"]
  predicted = gel_modes.nearest_neighbor_labels(real, y, real_labels=real_labels,
                                                num_classes=5)
  assert np.mean(np.asarray(predicted) == np.asarray(lab)) > 0.95
  auto = gel_modes.gel_mode_probabilities(
      real, y, real_labels=np.asarray(real_labels), witnesses=witnesses)
  assert auto.labels_source == "knn"
  np.testing.assert_allclose(np.asarray(auto.real_masses),
                             np.asarray(res["dropped"].real_masses),
                             atol=1e-6)
  json.dumps(auto.to_dict())
