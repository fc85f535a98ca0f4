"""Duals of generalized empirical likelihood (GEL) and a safeguarded solver.

One-sample GEL reweights rows z_1..z_N (moment vectors, already centred on
the target) so that they average to zero while staying close to uniform:

  min_w D(w || u_N)  s.t.  w_k >= 0,  sum_k w_k = 1,  sum_k w_k z_k = 0.

For the three Cressie-Read members in use (Newey & Smith 2004, gamma = -1, 0,
1) the problem is solved through its dual in lambda (J,), v_k = lambda . z_k:

  el   D = -(1/N) sum log(N w_k)     f(lambda) = -(1/N) sum log*(1 + v_k)
                                      w_k = 1 / (N (1 + v_k))
  et   D = sum w_k log(N w_k)        f(lambda) = logsumexp_k(v_k)
                                      w = softmax(v)
  cue  D = N sum (w_k - 1/N)^2       f(lambda) = (1/N) sum (1 + v_k)^2 / 2
                                      w_k = (1 + v_k) / sum_j (1 + v_j)

Each f is convex and its gradient is +-sum_k w_k z_k, the constraint
residual. log* is Owen's pseudo-logarithm (log above 1/N, its quadratic
continuation below), which makes the EL dual finite everywhere without
changing its minimiser when the problem is feasible. CUE weights can be
negative (the primal has no w >= 0 constraint).

`solve` runs Newton's method (Cholesky of H + ridge, gradient fallback if it
fails) or L-BFGS started from a fixed diagonal matrix (for many problems
that share their rows, as permutation replicates do: H at lambda = 0 is the
same for all of them); both with Armijo backtracking on a cancellation-free form of
f(lambda + t d) - f(lambda). It stops with one of three statuses:

  SOLVED         |sum_k w_k z_k| <= tol (the constraint holds: no false
                 success without it, unlike the reference's entropy test)
  INFEASIBLE     a certificate was found: some lambda with v_k < 0 for all
                 k (or > 0 for all k) strictly separates 0 from the convex
                 hull of the z_k, so no weights satisfy the constraint
  NOT_CONVERGED  iterations ran out or the line search stalled: typical of
                 EL when 0 is on the boundary of the hull (EL needs the
                 interior) or of a problem too ill-conditioned for the dtype

With `cap` = c the solver minimises f(lambda) + (|lambda| - c)_+^2 / 2
instead: the same minimiser as f when |lambda*| <= c, and a finite one
for every z (outside the hull too), whose weights trade divergence against
the moment mismatch r = sum_k w_k z_k at the price c |r| + |r|^2 / 2 (its
Fenchel dual). `gendiag.metrics.gel.gel_test` orders permutations by it.

Rows can be masked out (weight 0) and multiplied by signs s_k = +-1
(z_k = s_k phi_k without materialising z), so permutation replicates of a
two-sample problem share one (N, J) array under `vmap`.

References:
  Owen, "Empirical Likelihood", 2001 (ch. 3: the dual and log*).
  Newey & Smith, "Higher order properties of GMM and generalized empirical
  likelihood estimators", Econometrica 2004.
  Ravuri, Rey, Mohamed & Deisenroth, "Understanding Deep Generative Models
  with Generalized Empirical Likelihoods", CVPR 2023 (reference notebook:
  Newton from lambda = 0, fixed 1/2 step for ET, no line search).
"""

import functools
from typing import NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp

from gendiag import _results
from gendiag.metrics.gel import objectives

HIGHEST = lax.Precision.HIGHEST
OBJECTIVES = ("el", "et", "cue")
SOLVED, INFEASIBLE, NOT_CONVERGED = 0, 1, 2
STATUS_NAMES = ("solved", "infeasible", "not_converged")
_ARMIJO = 1e-4
_MAX_HALVINGS = 40


def default_tol(dtype) -> float:
  """Residual tolerance |sum w z| for whitened rows: 1e-10 (f64), 1e-5 (f32)."""
  return 1e-10 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def default_ridge(dtype) -> float:
  """Newton ridge, relative to trace(H) / J: 1e-12 (f64), 1e-6 (f32)."""
  return 1e-12 if jnp.dtype(dtype) == jnp.float64 else 1e-6


@_results.result(static=("objective",))
class DualSolution:
  """The solver's output.

  Attributes:
    lam: (J,) dual variable.
    weights: (N,) primal weights recovered from the dual, summing to 1 (0 on
      masked rows). Finite for every status: for INFEASIBLE and
      NOT_CONVERGED they are those of the last iterate, not a solution.
    value: the dual objective f(lambda).
    residual: |sum_k w_k z_k| (Euclidean), the constraint violation.
    num_iterations: Newton (or gradient) steps taken.
    status: SOLVED, INFEASIBLE or NOT_CONVERGED (see STATUS_NAMES).
    objective: 'el', 'et' or 'cue'.
  """
  lam: jax.Array
  weights: jax.Array
  value: jax.Array
  residual: jax.Array
  num_iterations: jax.Array
  status: jax.Array
  objective: str

  @property
  def converged(self):
    return self.status == SOLVED


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _implicit(objective, ridge, cap, lam, phi, signs, mask):
  """lambda* itself, with implicit gradients: g(lambda*, phi) = 0 gives
  d lambda* = -H^{-1} (d g / d phi) d phi (the loop is not differentiated)."""
  del objective, ridge, cap, phi, signs, mask
  return lam


def _implicit_fwd(objective, ridge, cap, lam, phi, signs, mask):
  return lam, (lam, phi, signs, mask)


def _implicit_bwd(objective, ridge, cap, residuals, lam_bar):
  lam, phi, signs, mask = residuals
  rows = mask > 0
  count = jnp.maximum(jnp.sum(rows), 1).astype(phi.dtype)

  def grad_f(p, s):
    v = s * jnp.matmul(p, lam, precision=HIGHEST)
    _, w, _, _ = objectives.terms(objective, v, rows, count)
    return objectives.gradient(objective, jnp.matmul(p.T, s * w, precision=HIGHEST), v,
                               rows, count)

  # (The penalty's gradient does not depend on phi: only H changes.)
  hess, _ = objectives.hessian(objective, lam, phi, signs, rows, count, ridge, cap)
  u = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(hess), True), lam_bar)
  _, vjp = jax.vjp(grad_f, phi, signs)
  phi_bar, signs_bar = vjp(-u)
  return jnp.zeros_like(lam), phi_bar, signs_bar, jnp.zeros_like(mask)


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


class _Problem(NamedTuple):
  """One dual problem as `solve`'s iterations see it (rows z_k = s_k phi_k)."""
  phi: jax.Array
  signs: jax.Array
  mask: jax.Array
  count: jax.Array           # unmasked rows, >= 1
  slack: jax.Array           # rounding allowance of the separation test
  preconditioner: Optional[jax.Array]
  objective: str
  method: str
  tol: float
  ridge: float
  cap: Optional[float]
  memory: int                # L-BFGS pairs kept (0 for Newton)


def _z_times(pb, lam):
  return pb.signs * jnp.matmul(pb.phi, lam, precision=HIGHEST)


def _evaluate(pb, lam, v):
  """(f, w, h, rank_one, g, |Z^T w|) at lambda (v = Z lambda)."""
  f, w, h, rank_one = objectives.terms(pb.objective, v, pb.mask, pb.count)
  zt_w = jnp.matmul(pb.phi.T, pb.signs * w, precision=HIGHEST)
  g = objectives.gradient(pb.objective, zt_w, v, pb.mask, pb.count)
  if pb.cap is not None:
    p, grad_p, _ = objectives.penalty(lam, pb.cap)
    f, g = f + p, g + grad_p
  return f, w, h, rank_one, g, jnp.linalg.norm(zt_w)


def _status(pb, lam, v, residual, g):
  """SOLVED, INFEASIBLE (a separating certificate) or NOT_CONVERGED."""
  if pb.cap is not None:  # always feasible: converged or not
    done = jnp.linalg.norm(g) <= pb.tol
    if pb.objective == "et":
      done = done | (objectives.capped_gap(lam, g, pb.cap) <= pb.tol)
    return jnp.where(done, SOLVED, NOT_CONVERGED)
  bound = pb.slack * jnp.linalg.norm(lam)
  big = jnp.max(jnp.where(pb.mask, v, -jnp.inf))
  small = jnp.min(jnp.where(pb.mask, v, jnp.inf))
  certified = (pb.objective != "cue") & ((big < -bound) | (small > bound))
  return jnp.where(residual <= pb.tol, SOLVED,
                   jnp.where(certified, INFEASIBLE, NOT_CONVERGED))


def _precondition(pb, q):
  if pb.preconditioner is None:
    return q
  return q / pb.preconditioner


def _direction(pb, state):
  """The L-BFGS or (ridged) Newton direction, -g / scale if Newton fails."""
  g = state["g"]
  if pb.method == "lbfgs":
    return -objectives.two_loop(g, state["s"], state["y"], state["rho"],
                                functools.partial(_precondition, pb))
  hess, _ = objectives.hessian(pb.objective, state["lam"], pb.phi, pb.signs,
                               pb.mask, pb.count, pb.ridge, pb.cap)
  d = -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(hess), True), g)
  ok = jnp.all(jnp.isfinite(d)) & (jnp.dot(g, d, precision=HIGHEST) < 0)
  scale = jnp.maximum(jnp.trace(hess) / pb.phi.shape[1],
                      jnp.finfo(pb.phi.dtype).tiny)
  return jnp.where(ok, d, -g / scale)


def _not_enough(pb, state, d, u, slope, carry):
  """Whether step t = carry[0] still fails Armijo (and halvings remain)."""
  t, k = carry
  dtype = pb.phi.dtype
  dec, noise = objectives.delta(pb.objective, state["v"], u, t, pb.mask,
                                pb.count, state["w"])
  if pb.cap is not None:
    before = objectives.penalty(state["lam"], pb.cap)[0]
    after = objectives.penalty(state["lam"] + t * d, pb.cap)[0]
    dec = dec + (after - before)
    noise = noise + jnp.finfo(dtype).eps * (after + before)
  armijo = dec <= _ARMIJO * t * slope
  # Once both the predicted and the measured change are below rounding
  # noise, Armijo cannot be decided: trust the direction (the residual
  # test decides convergence) rather than stall.
  at_noise = (dec <= 8.0 * noise) & (-t * slope <= 800.0 * noise)
  bad = ~(armijo | at_noise) | ~jnp.isfinite(dec)
  return bad & (k < _MAX_HALVINGS)


def _step(pb, state):
  """One iteration: direction, backtracking line search, L-BFGS update."""
  dtype = pb.phi.dtype
  v, g = state["v"], state["g"]
  d = _direction(pb, state)
  d = jnp.where(jnp.dot(g, d, precision=HIGHEST) < 0, d, -g)  # descent
  u = _z_times(pb, d)
  slope = jnp.dot(g, d, precision=HIGHEST)
  t, k = lax.while_loop(
      functools.partial(_not_enough, pb, state, d, u, slope),
      lambda c: (0.5 * c[0], c[1] + 1), (jnp.ones((), dtype), jnp.int32(0)))
  stalled = k >= _MAX_HALVINGS
  t = jnp.where(stalled, 0.0, t)
  new = dict(state, lam=state["lam"] + t * d, v=v + t * u, it=state["it"] + 1,
             stalled=stalled)
  new["f"], new["w"], _, _, new["g"], new["residual"] = _evaluate(
      pb, new["lam"], new["v"])
  new["status"] = _status(pb, new["lam"], new["v"], new["residual"],
                          new["g"])
  if pb.memory:
    s_new, y_new = t * d, new["g"] - g
    sy = jnp.dot(s_new, y_new, precision=HIGHEST)
    keep = sy > jnp.finfo(dtype).eps * jnp.linalg.norm(
        s_new) * jnp.linalg.norm(y_new)
    roll = lambda a, x: jnp.where(  # noqa: E731
        keep, jnp.roll(a, -1, axis=0).at[-1].set(x), a)
    new["s"], new["y"] = roll(state["s"], s_new), roll(state["y"], y_new)
    new["rho"] = roll(state["rho"], 1.0 / jnp.where(keep, sy, 1.0))
  return new


def _keep_going(max_iterations, state):
  return ((state["it"] < max_iterations)
          & (state["status"] == NOT_CONVERGED) & ~state["stalled"])


@functools.partial(jax.jit, static_argnames=(
    "objective", "max_iterations", "tol", "method", "memory", "ridge", "cap"))
def solve(phi: jax.Array, *, objective: str = "et",
          signs: Optional[jax.Array] = None,
          mask: Optional[jax.Array] = None,
          max_iterations: int = 100, tol: Optional[float] = None,
          method: str = "newton", preconditioner: Optional[jax.Array] = None,
          memory: int = 8, ridge: Optional[float] = None,
          init: Optional[jax.Array] = None,
          cap: Optional[float] = None) -> DualSolution:
  """Solves the one-sample GEL dual for rows z_k = signs_k * phi_k.

  Starts from lambda = 0 (uniform weights) or `init`. Each step takes a
  direction d,

    newton  d = -(H + ridge tr(H)/J I)^{-1} g, H formed exactly (N J^2)
    lbfgs   L-BFGS with `memory` pairs started from the diagonal matrix
            diag(`preconditioner`) (e.g. the diagonal of H at lambda = 0,
            which permutation replicates share; the identity without one):
            O(N J) per step

  then the largest t in {1, 1/2, ..., 2^-40} with f(lambda + t d) -
  f(lambda) <= 1e-4 t g.d (Armijo; a step whose predicted and measured
  changes are both at rounding level is accepted, so float32 does not stall
  at the noise floor). Jitted (the keyword options are static) and
  vmap-safe (a `lax.while_loop`; statuses are traced integers). Reverse-mode
  differentiable in phi and signs by the implicit function theorem at the
  returned lambda (H^{-1} applied once; the iterations are not unrolled).

  Args:
    phi: (N, J) moment rows; whitened (identity covariance) rows make `tol`
      dimensionless and the identity a good L-BFGS start.
    objective: 'el', 'et' or 'cue'.
    signs: optional (N,) +-1 multipliers of the rows.
    mask: optional (N,) bool; False rows get weight 0 and do not count in N.
    max_iterations: cap on steps.
    tol: residual tolerance for SOLVED; default `default_tol(phi.dtype)`.
    method: 'newton' or 'lbfgs'.
    preconditioner: (J,) positive diagonal of the L-BFGS start matrix.
    memory: L-BFGS pairs kept.
    ridge: relative Newton ridge; default `default_ridge(phi.dtype)`. It only
      changes the path, not the solution (g = 0 there).
    init: optional (J,) starting lambda (e.g. another method's last iterate).
    cap: minimise f(lambda) + (|lambda| - cap)_+^2 / 2 instead (see
      `capped_statistic`): a problem with a minimiser for every z, the
      same one as f's when |lambda*| <= cap. SOLVED then means the
      penalised gradient is below `tol` (never INFEASIBLE); `residual` is
      still |sum w z|, the moment mismatch left, and `value` includes P.

  Returns:
    A `DualSolution`; `num_iterations` counts this call's steps only.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}; got "
                     f"{objective!r}.")
  if method not in ("newton", "lbfgs"):
    raise ValueError(f"method must be 'newton' or 'lbfgs'; got {method!r}.")
  n, num_moments = phi.shape
  dtype = phi.dtype
  tol = default_tol(dtype) if tol is None else tol
  ridge = default_ridge(dtype) if ridge is None else ridge
  signs = jnp.ones((n,), dtype) if signs is None else signs.astype(dtype)
  mask = jnp.ones((n,), bool) if mask is None else mask.astype(bool)
  # Reverse-mode cannot cross a while_loop: the loop runs on constants and
  # lambda* gets implicit gradients afterwards (`_implicit`).
  phi_in, signs_in = phi, signs
  phi, signs = lax.stop_gradient(phi), lax.stop_gradient(signs)
  if preconditioner is not None:
    preconditioner = lax.stop_gradient(preconditioner)
  if init is not None:
    init = lax.stop_gradient(init)
  count = jnp.maximum(jnp.sum(mask), 1).astype(dtype)
  row_norm = jnp.max(jnp.where(mask, jnp.linalg.norm(phi, axis=1), 0.0))
  memory = memory if method == "lbfgs" else 0
  pb = _Problem(phi=phi, signs=signs, mask=mask, count=count,
                slack=64.0 * jnp.finfo(dtype).eps * row_norm,
                preconditioner=preconditioner, objective=objective,
                method=method, tol=tol, ridge=ridge, cap=cap, memory=memory)

  lam = jnp.zeros((num_moments,), dtype) if init is None else init
  state = dict(lam=lam, v=_z_times(pb, lam), it=jnp.int32(0),
               stalled=jnp.bool_(False),
               s=jnp.zeros((memory, num_moments), dtype),
               y=jnp.zeros((memory, num_moments), dtype),
               rho=jnp.zeros((memory,), dtype))
  state["f"], state["w"], _, _, state["g"], state["residual"] = _evaluate(
      pb, state["lam"], state["v"])
  state["status"] = _status(pb, state["lam"], state["v"], state["residual"],
                            state["g"])
  state = lax.while_loop(functools.partial(_keep_going, max_iterations),
                         functools.partial(_step, pb), state)
  lam = _implicit(objective, ridge, cap, state["lam"], phi_in, signs_in,
                  mask.astype(dtype))
  v = signs_in * jnp.matmul(phi_in, lam, precision=HIGHEST)
  f, w, _, _ = objectives.terms(objective, v, mask, count)
  if cap is not None:
    f = f + objectives.penalty(lam, cap)[0]
  return DualSolution(lam=lam, weights=w, value=f,
                      residual=state["residual"], num_iterations=state["it"],
                      status=state["status"], objective=objective)


def divergence(weights: jax.Array, objective: str, *,
               mask: Optional[jax.Array] = None) -> jax.Array:
  """D(w || uniform) of the objective, over the unmasked rows.

  el: -(1/n) sum log(n w) (+inf if some w <= 0); et: sum w log(n w) with
  0 log 0 = 0; cue: n sum (w - 1/n)^2 (Pearson chi^2, about twice the other
  two near uniform). n counts the unmasked rows.
  """
  mask = jnp.ones(weights.shape, bool) if mask is None else mask
  n = jnp.maximum(jnp.sum(mask), 1).astype(weights.dtype)
  if objective == "et":
    pos = mask & (weights > 0)
    safe = jnp.where(pos, weights, 1.0)
    # KL >= 0: clip the -1e-8 that rounding leaves at uniform weights.
    return jnp.maximum(jnp.sum(jnp.where(pos, safe * jnp.log(n * safe), 0.0)),
                       0.0)
  if objective == "el":
    pos = weights > 0
    safe = jnp.where(pos, weights, 1.0)
    terms = jnp.where(mask, -jnp.log(n * safe), 0.0)
    return jnp.where(jnp.all(pos | ~mask), jnp.maximum(jnp.sum(terms) / n, 0.0),
                     jnp.inf)
  if objective == "cue":
    return n * jnp.sum(jnp.where(mask, (weights - 1.0 / n) ** 2, 0.0))
  raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
