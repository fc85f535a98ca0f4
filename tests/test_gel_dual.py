"""The GEL dual solver: KKT conditions, closed forms, statuses, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize
from scipy import special

from gendiag.metrics.gel import dual as gel_dual

OBJECTIVES = ("el", "et", "cue")


def _reachable(rng, n=60, j=3):
  """Rows centred on a target that a known positive weighting reaches."""
  phi = rng.normal(size=(n, j))
  target_weights = rng.dirichlet(np.ones(n) * 5.0)
  return np.float32(phi - target_weights @ phi)


def _dual_value(objective, lam, z):
  """The dual objectives written independently of the solver (float64)."""
  v = z @ lam
  n = z.shape[0]
  if objective == "et":
    return jax.nn.logsumexp(v)
  if objective == "el":
    return -jnp.mean(jnp.log(1.0 + v))
  return jnp.sum((1.0 + v) ** 2) / (2 * n)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_known_solution_satisfies_constraints_and_kkt(rng, objective):
  z = _reachable(rng)
  sol = gel_dual.solve(jnp.asarray(z), objective=objective)
  assert int(sol.status) == gel_dual.SOLVED
  w = np.asarray(sol.weights, np.float64)
  np.testing.assert_allclose(w.sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(w @ z, 0.0, atol=1e-5)
  assert float(sol.residual) <= gel_dual.default_tol(jnp.float32)
  if objective != "cue":
    assert w.min() > 0
  # The dual gradient (by autodiff of an independent formula) vanishes.
  lam = np.asarray(sol.lam, np.float64)
  with jax.enable_x64(True):
    grad = jax.grad(_dual_value, argnums=1)(objective, jnp.asarray(lam),
                                            jnp.asarray(z, jnp.float64))
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-5)
  # Weights have the dual's closed form in lambda.
  v = z.astype(np.float64) @ lam
  expected = {"et": np.exp(v - v.max()), "el": 1.0 / (1.0 + v),
              "cue": 1.0 + v}[objective]
  np.testing.assert_allclose(w, expected / expected.sum(), rtol=2e-4,
                             atol=1e-7)


def test_cue_matches_the_closed_form(rng):
  """p_i = (1 - (z_i - zbar)^T S^-1 zbar) / n, S the biased covariance."""
  z = _reachable(rng, n=50, j=4).astype(np.float64) + 0.05
  zbar = z.mean(0)
  s = np.cov(z.T, bias=True)
  expected = (1.0 - (z - zbar) @ np.linalg.solve(s, zbar)) / len(z)
  sol = gel_dual.solve(jnp.asarray(np.float32(z)), objective="cue")
  np.testing.assert_allclose(np.asarray(sol.weights), expected, atol=2e-6)
  div = gel_dual.divergence(sol.weights, "cue")
  np.testing.assert_allclose(float(div),
                             len(z) * np.sum((expected - 1 / len(z)) ** 2),
                             rtol=1e-4)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_uniform_when_the_target_is_the_mean(rng, objective):
  phi = rng.normal(size=(60, 3))
  z = jnp.asarray(np.float32(phi - phi.mean(0)))
  sol = gel_dual.solve(z, objective=objective)
  assert int(sol.status) == gel_dual.SOLVED
  np.testing.assert_allclose(np.asarray(sol.weights), 1 / 60, atol=1e-6)
  assert abs(float(gel_dual.divergence(sol.weights, objective))) < 1e-6


@pytest.mark.parametrize("objective", ["el", "et"])
def test_outside_the_hull_is_certified_infeasible(rng, objective):
  z = rng.normal(size=(60, 3))
  z[:, 0] = np.abs(z[:, 0]) + 0.1  # every row on one side of 0
  sol = gel_dual.solve(jnp.asarray(np.float32(z)), objective=objective)
  assert int(sol.status) == gel_dual.INFEASIBLE
  assert np.all(np.isfinite(np.asarray(sol.weights)))
  assert np.isfinite(float(sol.residual)) and float(sol.residual) > 0.05
  # A certificate: lambda strictly separates every row from 0.
  v = z @ np.asarray(sol.lam, np.float64)
  assert np.all(v < 0) or np.all(v > 0)


def test_boundary_point_et_solves_el_does_not(rng):
  """0 on the hull's boundary: ET's weights vanish off the face, EL fails."""
  z = rng.normal(size=(40, 2))
  z[:20, 0] = 0.0                       # a face through 0 ...
  z[:20, 1] -= z[:20, 1].mean()         # ... with 0 inside it
  z[20:, 0] = np.abs(z[20:, 0]) + 0.5   # everything else on one side
  z = jnp.asarray(np.float32(z))
  et = gel_dual.solve(z, objective="et", max_iterations=200)
  assert int(et.status) == gel_dual.SOLVED
  assert float(jnp.sum(et.weights[20:])) < 1e-3
  el = gel_dual.solve(z, objective="el", max_iterations=50)
  assert int(el.status) != gel_dual.SOLVED
  assert np.all(np.isfinite(np.asarray(el.weights)))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_mask_equals_solving_the_subset(rng, objective):
  z = np.concatenate([_reachable(rng, n=45), np.float32(
      rng.normal(size=(15, 3)) + 5.0)])
  keep = np.arange(60) < 45
  sub = gel_dual.solve(jnp.asarray(z[keep]), objective=objective)
  masked = gel_dual.solve(jnp.asarray(z), objective=objective,
                          mask=jnp.asarray(keep))
  assert int(sub.status) == int(masked.status) == gel_dual.SOLVED
  assert np.all(np.asarray(masked.weights)[~keep] == 0)
  np.testing.assert_allclose(np.asarray(masked.weights)[keep],
                             np.asarray(sub.weights), atol=1e-6)


def test_signs_equal_negated_rows(rng):
  z = _reachable(rng)
  signs = np.where(rng.random(len(z)) < 0.5, -1.0, 1.0).astype(np.float32)
  a = gel_dual.solve(jnp.asarray(z * signs[:, None]), objective="et")
  b = gel_dual.solve(jnp.asarray(z), objective="et", signs=jnp.asarray(signs))
  np.testing.assert_allclose(np.asarray(a.weights), np.asarray(b.weights),
                             atol=1e-6)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_lbfgs_newton_jit_and_vmap_agree(rng, objective):
  problems = np.stack([_reachable(rng) for _ in range(3)])
  newton = [gel_dual.solve(jnp.asarray(p), objective=objective)
            for p in problems]
  lbfgs = jax.jit(jax.vmap(lambda p: gel_dual.solve(
      p, objective=objective, method="lbfgs", max_iterations=500)))(
          jnp.asarray(problems))
  assert np.all(np.asarray(lbfgs.status) == gel_dual.SOLVED)
  for i, sol in enumerate(newton):
    np.testing.assert_allclose(np.asarray(lbfgs.weights[i]),
                               np.asarray(sol.weights), atol=2e-6)
  if objective == "et":  # the un-jitted path (Python loops) once
    with jax.disable_jit():
      eager = gel_dual.solve(jnp.asarray(problems[0]), objective=objective)
    np.testing.assert_allclose(np.asarray(eager.weights),
                               np.asarray(newton[0].weights), atol=1e-6)


def test_divergence_closed_forms():
  w = jnp.asarray([0.5, 0.5, 0.0, 0.0])
  np.testing.assert_allclose(float(gel_dual.divergence(w, "et")), np.log(2),
                             rtol=1e-6)
  assert np.isinf(float(gel_dual.divergence(w, "el")))
  np.testing.assert_allclose(float(gel_dual.divergence(w, "cue")), 1.0,
                             rtol=1e-6)
  w = jnp.asarray([0.2, 0.3, 0.5])
  np.testing.assert_allclose(float(gel_dual.divergence(w, "el")),
                             -np.mean(np.log(3 * np.asarray(w))), rtol=1e-6)


def test_bad_arguments_raise():
  z = jnp.ones((5, 2))
  with pytest.raises(ValueError, match="objective"):
    gel_dual.solve(z, objective="kl")
  with pytest.raises(ValueError, match="method"):
    gel_dual.solve(z, method="bfgs")
  with pytest.raises(ValueError, match="objective"):
    gel_dual.divergence(jnp.ones(3) / 3, "kl")


@pytest.mark.parametrize("objective", ["el", "et"])
def test_cap_changes_nothing_when_the_multiplier_is_inside_it(rng, objective):
  z = jnp.asarray(_reachable(rng))
  plain = gel_dual.solve(z, objective=objective)
  capped = gel_dual.solve(z, objective=objective, cap=10.0)
  assert float(jnp.linalg.norm(plain.lam)) < 10.0
  assert int(plain.status) == int(capped.status) == gel_dual.SOLVED
  np.testing.assert_allclose(np.asarray(capped.weights),
                             np.asarray(plain.weights), atol=1e-7)
  np.testing.assert_allclose(float(capped.value), float(plain.value),
                             rtol=1e-6)


def _capped_et_reference(z, cap):
  """min_lambda logsumexp(Z lambda) + (|lambda| - cap)_+^2 / 2 (scipy, f64)."""
  def fun(lam):
    v = z @ lam
    w = np.exp(v - special.logsumexp(v))
    size = np.linalg.norm(lam)
    excess = max(size - cap, 0.0)
    grad = z.T @ w + (excess * lam / size if excess > 0 else 0.0)
    return special.logsumexp(v) + 0.5 * excess ** 2, grad

  res = optimize.minimize(fun, np.zeros(z.shape[1]), jac=True, method="BFGS",
                          options=dict(gtol=1e-10, maxiter=10000))
  return res.fun


def test_capped_et_outside_the_hull_is_finite_dual_exact_and_ordered(rng):
  """Outside the hull the plain dual is unbounded (INFEASIBLE); the capped
  one has a finite minimum (scipy reference), equal to its Fenchel primal
  KL(w || u) + c |r| + |r|^2 / 2 at the returned weights, and it grows as
  the rows move further from 0."""
  cap = 10.0
  base = rng.normal(size=(60, 3))
  base[:, 0] = np.abs(base[:, 0])
  values = []
  for shift in (0.1, 0.3, 1.0):
    z = base + np.array([shift, 0.0, 0.0])
    zj = jnp.asarray(np.float32(z))
    assert int(gel_dual.solve(zj, objective="et").status) == (
        gel_dual.INFEASIBLE)
    sol = gel_dual.solve(zj, objective="et", cap=cap)
    assert int(sol.status) == gel_dual.SOLVED
    np.testing.assert_allclose(float(sol.value), _capped_et_reference(z, cap),
                               rtol=1e-5, atol=1e-5)
    w = np.asarray(sol.weights, np.float64)
    r = np.linalg.norm(w @ z)
    np.testing.assert_allclose(float(sol.residual), r, rtol=1e-4)
    primal = (np.sum(w * np.log(60 * np.maximum(w, 1e-300))) + cap * r
              + 0.5 * r * r)
    divergence = np.log(60) - float(sol.value)
    np.testing.assert_allclose(primal, divergence, rtol=1e-4)
    assert divergence >= cap * r  # at least c x the distance to the hull
    values.append(divergence)
  assert values[0] < values[1] < values[2]


def test_capped_el_outside_the_hull_is_finite(rng):
  z = rng.normal(size=(60, 3))
  z[:, 0] = np.abs(z[:, 0]) + 0.2
  sol = gel_dual.solve(jnp.asarray(np.float32(z)), objective="el", cap=10.0)
  assert int(sol.status) == gel_dual.SOLVED
  assert np.isfinite(float(sol.value))
  w = np.asarray(sol.weights)
  assert np.all(w > 0) and abs(w.sum() - 1) < 1e-5


def test_capped_weights_gradient_matches_finite_differences(rng):
  """Implicit gradients include the cap's Hessian (outside the hull). (The
  weights, not the value: by the envelope theorem the value's gradient
  does not see d lambda* / d z.)"""
  z = rng.normal(size=(40, 3))
  z[:, 0] = np.abs(z[:, 0]) + 0.3
  direction = rng.normal(size=z.shape)
  probe = jnp.asarray(rng.normal(size=40))
  with jax.enable_x64(True):
    value = lambda z: jnp.dot(
        gel_dual.solve(z, objective="et", cap=2.0).weights, probe)
    grad = jax.grad(value)(jnp.asarray(z))
    eps = 1e-6
    fd = (value(jnp.asarray(z + eps * direction))
          - value(jnp.asarray(z - eps * direction))) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(fd),
                               rtol=1e-6)
