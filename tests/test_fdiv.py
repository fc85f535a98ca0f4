"""The f-divergence table, PR curves, PR-divergences and the mixture theorem.

Closed-form cases from notes/precision_recall.md (P = real, Q = model).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gendiag.ops import fdiv

from gendiag.ops import pr_curves

SMOOTH = ("kl", "reverse_kl", "pearson", "hellinger", "jensen_shannon")
ALL = tuple(fdiv.DIVERGENCES)
LAMS = np.array([0.1, 0.5, 1.0, 2.0, 10.0])

# (p, q, alpha at LAMS) from the notes' table.
CASES = {
    "identical": ([.5, .5], [.5, .5], [.1, .5, 1, 1, 1]),
    "A": ([.6, .4], [.2, .8], [.1, .4, .6, 1, 1]),
    "B": ([.5, .5, 0], [.5, 0, .5], [.05, .25, .5, .5, .5]),
    "disjoint": ([1, 0], [0, 1], [0, 0, 0, 0, 0]),
}


def _dirichlet(seed, k=6):
  rng = np.random.default_rng(seed)
  return (rng.dirichlet(np.ones(k)).astype(np.float32),
          rng.dirichlet(np.ones(k)).astype(np.float32))


# --------------------------------------------------------------------------
# The table.


@pytest.mark.parametrize("name", ALL)
def test_f_vanishes_at_one_and_is_convex(name):
  div = fdiv.DIVERGENCES[name]
  assert abs(float(div.f(jnp.float32(1.0)))) < 1e-7
  u = jnp.linspace(0.05, 8.0, 400)
  fu = np.asarray(div.f(u), np.float64)
  mid = np.asarray(div.f((u[:-2] + u[2:]) / 2), np.float64)
  assert np.all(mid <= (fu[:-2] + fu[2:]) / 2 + 1e-6)


@pytest.mark.parametrize("name", ALL)
def test_f_prime_is_the_derivative(name):
  div = fdiv.DIVERGENCES[name]
  u = jnp.array([0.1, 0.4, 0.7, 1.3, 2.5, 6.0])  # away from kinks
  np.testing.assert_allclose(div.f_prime(u), jax.vmap(jax.grad(div.f))(u),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SMOOTH)
def test_f_double_prime_is_the_second_derivative(name):
  div = fdiv.DIVERGENCES[name]
  u = jnp.array([0.1, 0.4, 0.7, 1.3, 2.5, 6.0])
  np.testing.assert_allclose(div.f_double_prime(u),
                             jax.vmap(jax.grad(div.f_prime))(u), rtol=1e-5)


@pytest.mark.parametrize("name", ALL + ("pr_half", "pr_three"))
def test_conjugate_is_the_sup_over_a_grid(name):
  div = {"pr_half": fdiv.get("pr", lam=0.5),
         "pr_three": fdiv.get("pr", lam=3.0)}.get(name) or fdiv.DIVERGENCES[name]
  u = np.concatenate([[0.0], np.geomspace(1e-6, 400.0, 200001)])
  fu = np.asarray(div.f(jnp.asarray(u)), np.float64)
  fu = np.where(np.isfinite(fu), fu, np.inf)
  sup = float(div.conjugate_sup)
  ts = np.array([-5.0, -2.5, -1.0, -0.3, 0.0, 0.2, 0.4, 0.9, 1.5, 2.9])
  for t in ts:
    if t > sup or (t == sup and not div.conjugate_sup_closed):
      assert np.isinf(float(div.conjugate(jnp.float32(t))))
      continue
    want = np.max(t * u - fu)
    got = float(div.conjugate(jnp.float32(t)))
    assert abs(got - want) < 1e-3 * max(1.0, abs(want)), (t, got, want)


@pytest.mark.parametrize("name", ALL)
def test_boundary_constants(name):
  div = fdiv.DIVERGENCES[name]
  f0 = float(div.f(jnp.float32(0.0)))
  assert f0 == pytest.approx(float(div.f_at_zero), abs=1e-6)
  big = 1e12
  slope = float(div.f(jnp.float32(big))) / big
  if math.isinf(div.slope_at_infinity):
    assert slope > 10
  else:
    assert slope == pytest.approx(float(div.slope_at_infinity), abs=1e-5)


def test_pr_weights_match_the_notes_table():
  lam = jnp.array([0.05, 0.3, 1.0, 2.0, 7.0])
  want = {"kl": 1 / lam ** 2, "reverse_kl": 1 / lam, "pearson": 2 / lam ** 3,
          "hellinger": 0.5 * lam ** -1.5,
          "jensen_shannon": 1 / (2 * lam * (lam + 1)),
          "total_variation": 0 * lam, "pr": 0 * lam}
  for name, w in want.items():
    np.testing.assert_allclose(fdiv.DIVERGENCES[name].pr_weight(lam), w,
                               rtol=1e-5, err_msg=name)
  assert fdiv.DIVERGENCES["total_variation"].pr_atoms == ((1.0, 1.0),)
  assert fdiv.get("pr", lam=2.5).pr_atoms == ((2.5, 1.0),)


@pytest.mark.parametrize("name", ALL)
def test_output_activation_lands_in_the_conjugate_domain(name):
  div = fdiv.DIVERGENCES[name]
  # float32 saturates beyond |v| ~ 15 (1 - exp(-v) rounds to 1).
  t = div.output_activation(jnp.linspace(-10.0, 10.0, 101))
  assert bool(jnp.all(div.in_conjugate_domain(t)))
  assert bool(jnp.all(jnp.isfinite(div.conjugate(t))))


@pytest.mark.parametrize("name", SMOOTH)
def test_ratio_from_critic_inverts_f_prime(name):
  div = fdiv.DIVERGENCES[name]
  u = jnp.array([0.2, 0.8, 1.0, 1.7, 4.0])
  np.testing.assert_allclose(div.ratio_from_critic(div.f_prime(u)), u,
                             rtol=1e-4)


def test_ratio_from_critic_refuses_piecewise_linear():
  with pytest.raises(NotImplementedError, match="auxiliary"):
    fdiv.get("pr", lam=2.0).ratio_from_critic(jnp.float32(1.0))


def test_get_validates():
  with pytest.raises(ValueError, match="unknown f-divergence"):
    fdiv.get("kl2")
  with pytest.raises(ValueError, match="no parameters"):
    fdiv.get("kl", lam=2.0)
  with pytest.raises(ValueError, match="lam"):
    fdiv.get("pr", lam=0.0)
  assert fdiv.get("pr", lam=3.0).lam == 3.0


# --------------------------------------------------------------------------
# PR curves of discrete distributions.


@pytest.mark.parametrize("case", sorted(CASES))
def test_alpha_closed_forms(case):
  p, q, alpha = CASES[case]
  np.testing.assert_allclose(pr_curves.pr_precision(jnp.array(p), jnp.array(q),
                                                    LAMS), alpha, atol=1e-6)
  d = pr_curves.pr_divergence(np.array(p), np.array(q), lam=LAMS)
  np.testing.assert_allclose(d, np.minimum(LAMS, 1) - np.array(alpha),
                             atol=1e-6)


@pytest.mark.parametrize("p,q,f8,f18,max_p,max_r", [
    ([.5, .5], [.5, .5], 1, 1, 1, 1),
    ([.6, .4], [.2, .8], .969959, .984829, 1, 1),
    ([.5, .5, 0], [.5, 0, .5], .5, .5, .5, .5),
    ([1, 0], [0, 1], 0, 0, 0, 0),
    ([.25] * 4, [.5, .5, 0, 0], .503863, .984829, 1, .5),
    ([.5, .5, 0, 0], [.25] * 4, .984829, .503863, .5, 1),
])
def test_pr_curve_summaries(p, q, f8, f18, max_p, max_r):
  curve = pr_curves.pr_curve(np.array(p, np.float32), np.array(q, np.float32))
  assert curve.precision.shape == (1001,)
  assert float(curve.f_beta) == pytest.approx(f8, abs=1e-4)
  assert float(curve.f_inv_beta) == pytest.approx(f18, abs=1e-4)
  assert float(curve.precision[-1]) == pytest.approx(max_p, abs=1e-5)
  assert float(curve.recall[0]) == pytest.approx(max_r, abs=1e-5)
  assert float(jnp.min(curve.precision)) >= 0
  assert float(jnp.max(curve.recall)) <= 1


def test_pr_curve_jit_vmap_and_symmetry():
  p, q = _dirichlet(1)
  curve = pr_curves.pr_curve(p, q)
  batched = jax.jit(jax.vmap(lambda a, b: pr_curves.pr_curve(a, b).precision))(
      jnp.stack([p, q]), jnp.stack([q, p]))
  np.testing.assert_allclose(batched[0], curve.precision, rtol=1e-6)
  # Swapping P and Q reflects the curve: precision <-> recall.
  np.testing.assert_allclose(batched[1], curve.recall[::-1], atol=1e-5)
  # alpha(1) = 1 - TV.
  tv = 0.5 * np.abs(p - q).sum()
  assert float(pr_curves.pr_precision(p, q, 1.0)) == pytest.approx(1 - tv, abs=1e-6)


def test_angle_slopes_are_positive_and_increasing():
  s = pr_curves.angle_slopes(1001)
  assert s[0] == pytest.approx(1e-10) and s[-1] == pytest.approx(1e10)
  assert np.all(np.diff(s) > 0)
  s32 = np.asarray(jnp.asarray(s, jnp.float32))
  assert np.all(s32 > 0)


def test_bad_distributions_raise():
  with pytest.raises(ValueError, match="same length"):
    pr_curves.pr_curve(np.ones(3) / 3, np.ones(2) / 2)
  with pytest.raises(ValueError, match="normalise"):
    pr_curves.pr_curve(np.ones(3), np.ones(3) / 3)
  with pytest.raises(ValueError, match="non-negative"):
    pr_curves.pr_divergence(np.array([1.5, -0.5]), np.array([.5, .5]), lam=1.0)
  with pytest.raises(ValueError, match="lam"):
    pr_curves.pr_divergence(np.array([.5, .5]), np.array([.5, .5]), lam=-1.0)
  with pytest.raises(ValueError, match="num_angles"):
    pr_curves.pr_curve(np.ones(2) / 2, np.ones(2) / 2, num_angles=2)
  with pytest.raises(ValueError, match="beta"):
    pr_curves.max_f_beta(jnp.ones(3), jnp.ones(3), beta=0.0)


# --------------------------------------------------------------------------
# PR-divergences.


def test_pr_divergence_is_the_f_divergence_of_f_lam():
  p, q = _dirichlet(2)
  q = q.at[0].set(0.0) if isinstance(q, jax.Array) else q
  q = np.concatenate([[0.0], q[1:] / q[1:].sum()]).astype(np.float32)
  for lam in LAMS:
    direct = pr_curves.f_divergence(p, q, fdiv.get("pr", lam=float(lam)))
    assert float(direct) == pytest.approx(
        float(pr_curves.pr_divergence(p, q, lam=lam)), abs=3e-6)


def test_pr_divergence_symmetry_and_range():
  p, q = _dirichlet(3)
  d_pq = pr_curves.pr_divergence(p, q, lam=LAMS)
  d_qp = pr_curves.pr_divergence(q, p, lam=1 / LAMS)
  np.testing.assert_allclose(d_pq, LAMS * d_qp, atol=1e-6)
  assert np.all(np.asarray(d_pq) >= 0)
  assert np.all(np.asarray(d_pq) <= np.minimum(LAMS, 1) + 1e-6)
  tv = pr_curves.f_divergence(p, q, fdiv.DIVERGENCES["total_variation"])
  assert float(d_pq[2]) == pytest.approx(float(tv), abs=1e-6)


def test_pr_divergence_vmaps_over_a_traced_lam():
  p, q = _dirichlet(4)
  lam = jnp.asarray(LAMS, jnp.float32)
  f = jax.jit(jax.vmap(lambda v: pr_curves.f_divergence(p, q, fdiv.PR(v))))
  np.testing.assert_allclose(f(lam), pr_curves.pr_divergence(p, q, lam=LAMS),
                             atol=1e-6)


def _gauss_alpha(lam, mu=1.0):
  x = jnp.log(lam) / mu + mu / 2
  cdf = jax.scipy.stats.norm.cdf
  return cdf(x - mu) + lam * (1 - cdf(x))


def test_gaussian_alpha_closed_form_and_discretisation():
  want = [0.098962, 0.404695, 0.617075, 0.809390, 0.989621]
  np.testing.assert_allclose(_gauss_alpha(jnp.asarray(LAMS)), want, atol=2e-6)
  # A fine histogram of N(0,1) vs N(1,1) gives the same alpha.
  edges = np.linspace(-12, 13, 50001)
  p = np.diff(stats.norm.cdf(edges))
  q = np.diff(stats.norm.cdf(edges - 1.0))
  p, q = (p / p.sum()).astype(np.float32), (q / q.sum()).astype(np.float32)
  np.testing.assert_allclose(pr_curves.pr_precision(p, q, LAMS), want, atol=1e-4)
  tv = 2 * stats.norm.cdf(0.5) - 1
  assert float(pr_curves.pr_divergence(p, q, lam=1.0)) == pytest.approx(tv,
                                                                        abs=1e-4)


# --------------------------------------------------------------------------
# The mixture theorem and the dual.


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("seed", [0, 5])
def test_mixture_theorem_discrete(name, seed):
  p, q = _dirichlet(seed)
  div = fdiv.DIVERGENCES[name]
  direct = float(pr_curves.f_divergence(p, q, div))
  mixture = float(pr_curves.f_divergence_from_pr(p, q, div))
  assert mixture == pytest.approx(direct, rel=1e-4, abs=1e-6)


def test_mixture_theorem_example_a_and_pr_lam():
  p, q = np.array([.6, .4]), np.array([.2, .8])
  for div in [fdiv.get("pr", lam=0.5), fdiv.get("pr", lam=0.3),
              fdiv.DIVERGENCES["kl"]]:
    assert float(pr_curves.f_divergence_from_pr(p, q, div)) == pytest.approx(
        float(pr_curves.f_divergence(p, q, div)), rel=1e-4, abs=1e-6)
  # KL is infinite when Q misses P's mass; the mixture integral diverges too,
  # like P(q = 0) log(1/lam_min): D_lam ~ lam/2 and w = 1/lam^2 near 0.
  p, q = np.array([.5, .5, 0]), np.array([.5, 0, .5])
  kl = fdiv.DIVERGENCES["kl"]
  assert math.isinf(float(pr_curves.f_divergence(p, q, kl)))
  wide = pr_curves.f_divergence_from_pr(p, q, kl, lam_min=1e-8)
  narrow = pr_curves.f_divergence_from_pr(p, q, kl, lam_min=1e-4)
  assert float(wide - narrow) == pytest.approx(0.5 * math.log(1e4), rel=1e-3)


@pytest.mark.parametrize("name,want", [("kl", 0.5), ("reverse_kl", 0.5),
                                       ("pearson", math.e - 1)])
def test_mixture_theorem_gaussians(name, want):
  div = fdiv.DIVERGENCES[name]
  got = pr_curves.mixture_integral(lambda lam: jnp.minimum(lam, 1) -
                                   _gauss_alpha(lam), div)
  assert float(got) == pytest.approx(want, rel=2e-4)


@pytest.mark.parametrize("name", ALL)
def test_dual_is_tight_at_f_prime_of_the_ratio(name):
  p, q = _dirichlet(7)
  div = fdiv.DIVERGENCES[name]
  t = div.f_prime(jnp.asarray(p / q))
  dual = float(jnp.sum(p * t) - jnp.sum(q * div.conjugate(t)))
  assert dual == pytest.approx(float(pr_curves.f_divergence(p, q, div)), abs=2e-5)
  # Any other critic does no better.
  t2 = div.output_activation(jnp.linspace(-1, 1, p.size))
  worse = float(jnp.sum(p * t2) - jnp.sum(q * div.conjugate(t2)))
  assert worse <= dual + 1e-6


@pytest.mark.parametrize("lam,want", [(1.0, 0.4), (0.3, 0.0), (4.0, 0.0)])
def test_pr_dual_example_a(lam, want):
  p, q = np.array([.6, .4]), np.array([.2, .8])
  div = fdiv.get("pr", lam=lam)
  t = lam * (lam * p / q > 1)
  dual = float(np.sum(p * t) - np.sum(q * np.asarray(div.conjugate(
      jnp.asarray(t, jnp.float32)))))
  assert dual == pytest.approx(want, abs=1e-6)


def test_variational_bound_from_samples():
  div = fdiv.DIVERGENCES["kl"]
  t_real = jnp.array([0.5, 1.0, 1.5])
  t_gen = jnp.array([0.0, 1.0])
  want = 1.0 - np.mean(np.exp(np.array([0.0, 1.0]) - 1))
  assert float(fdiv.variational_bound(div, t_real, t_gen)) == pytest.approx(
      want, rel=1e-6)


# --------------------------------------------------------------------------
# Weighted maximum likelihood (the flow trainer's exact gradient).


def test_kl_likelihood_weight_is_exactly_one():
  r = jnp.array([1e-3, 0.5, 1.0, 3.0, 1e3])
  np.testing.assert_array_equal(fdiv.DIVERGENCES["kl"].likelihood_weight(r),
                                np.ones(5))


@pytest.mark.parametrize("name", SMOOTH + ("pr",))
def test_weighted_mle_gradient_matches_autodiff(name):
  div = fdiv.get("pr", lam=0.7) if name == "pr" else fdiv.DIVERGENCES[name]
  p, _ = _dirichlet(8)
  logits = jnp.asarray(np.random.default_rng(9).normal(size=p.size),
                       jnp.float32)

  def d(lg):
    return pr_curves.f_divergence(p, jax.nn.softmax(lg), div)

  q = jax.nn.softmax(logits)
  w = div.likelihood_weight(p / q)
  grad_log_q = jax.jacobian(lambda lg: jax.nn.log_softmax(lg))(logits)
  want = -jnp.sum((p * w)[:, None] * grad_log_q, axis=0)
  np.testing.assert_allclose(jax.grad(d)(logits), want, rtol=2e-4, atol=1e-6)
