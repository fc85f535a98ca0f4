"""Tests of gendiag.flows.models: densities, bijections, conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.flows import models


def _perturbed(flow, seed=1, scale=0.3):
  params = flow.init(jax.random.key(0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [
      a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_density_integrates_to_one_on_a_grid(kind):
  flow = models.Flow(dim=2, kind=kind, num_layers=2, hidden_sizes=(8,),
                     num_bins=4, loc=(0.5, -0.5), scale=(1.5, 0.8))
  params = _perturbed(flow)
  side = np.linspace(-9.0, 9.0, 241)
  xx, yy = np.meshgrid(side, side)
  grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
  density = np.exp(np.asarray(jax.jit(flow.log_prob)(params, grid)),
                   dtype=np.float64)
  cell = (side[1] - side[0]) ** 2
  assert density.sum() * cell == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("kind", ["spline", "affine"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_round_trip_and_log_det(kind, num_classes):
  flow = models.Flow(dim=3, kind=kind, num_layers=3, hidden_sizes=(8,),
                     num_bins=4, num_classes=num_classes,
                     permutation="random")
  params = _perturbed(flow)
  labels = jnp.array([0, 2, 1, 2]) if num_classes else None
  z = jax.random.normal(jax.random.key(3), (4, 3))
  x, log_det_fwd = flow.forward(params, z, labels)
  z_back, log_det_inv = flow.inverse(params, x, labels)
  np.testing.assert_allclose(z_back, z, atol=1e-4)
  np.testing.assert_allclose(log_det_fwd, -log_det_inv, atol=1e-4)
  # log|det J| against autodiff's Jacobian of the forward map, per sample.
  # (jitted once: eager distrax/flax ops dispatch one by one, ~10x slower)
  jacobian = jax.jit(jax.jacfwd(
      lambda v, lab: flow.forward(params, v[None], lab)[0][0]))
  for i in range(4):
    lab = None if labels is None else labels[i:i + 1]
    jac = jacobian(z[i], lab)
    np.testing.assert_allclose(np.linalg.slogdet(np.asarray(jac))[1],
                               log_det_fwd[i], atol=1e-3)
  # The sampler's log q agrees with log_prob at its own samples.
  xs, log_q = flow.sample_and_log_prob(params, jax.random.key(4), 4, labels) \
      if labels is None else flow.sample_and_log_prob(
          params, jax.random.key(4), labels=labels)
  np.testing.assert_allclose(flow.log_prob(params, xs, labels), log_q,
                             atol=1e-3)


def test_initial_flow_is_the_normalised_gaussian():
  rng = np.random.default_rng(0)
  data = rng.normal(size=(100, 4)) * [1.0, 2.0, 3.0, 0.5] + [1, 2, 3, 4]
  flow = models.Flow(dim=4, kind="spline", num_layers=2,
                     hidden_sizes=(8,)).normalized_for(data)
  params = flow.init(jax.random.key(0))
  x = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  loc, scale = np.asarray(flow.loc), np.asarray(flow.scale)
  z = (np.asarray(x) - loc) / scale
  expected = (-0.5 * (z ** 2).sum(1) - 2 * np.log(2 * np.pi)
              - np.log(scale).sum())
  np.testing.assert_allclose(flow.log_prob(params, x), expected, atol=1e-4)


def test_labels_change_the_conditional_density():
  flow = models.Flow(dim=2, kind="affine", num_layers=2, hidden_sizes=(8,),
                     num_classes=2)
  params = _perturbed(flow)
  x = jnp.ones((3, 2))
  lp0 = flow.log_prob(params, x, jnp.zeros(3, jnp.int32))
  lp1 = flow.log_prob(params, x, jnp.ones(3, jnp.int32))
  assert np.all(np.abs(lp0 - lp1) > 1e-4)
  with pytest.raises(ValueError, match="class-conditional"):
    flow.log_prob(params, x)
  with pytest.raises(ValueError, match="unconditional"):
    models.Flow(dim=2).log_prob(params, x, jnp.zeros(3, jnp.int32))


@pytest.mark.parametrize("kwargs, match", [
    (dict(dim=2, kind="glow"), "unknown flow kind"),
    (dict(dim=1), "at least two dimensions"),
    (dict(dim=2, num_layers=0), "num_layers"),
    (dict(dim=2, permutation="shuffle"), "unknown permutation"),
    (dict(dim=2, loc=(0.0, 0.0)), "both `loc` and `scale`"),
    (dict(dim=2, loc=(0.0,), scale=(1.0,)), "need 2 entries"),
])
def test_bad_flow_configs_fail_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.Flow(**kwargs)


def test_dimension_mismatch_is_reported():
  flow = models.Flow(dim=3)
  with pytest.raises(ValueError, match="dim=3"):
    flow.normalized_for(np.zeros((10, 2)))
  with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
    flow.log_prob(flow.init(jax.random.key(0)), jnp.zeros((4, 2)))
