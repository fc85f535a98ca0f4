"""The GEL duals' values, gradients, Hessians and line-search differences.

For v = Z lambda (rows z_k = s_k phi_k, masked rows dropped, N = count):

  el   f(lambda) = -(1/N) sum log*(1 + v_k)     (Owen's pseudo-logarithm)
  et   f(lambda) = logsumexp_k(v_k)
  cue  f(lambda) = (1/N) sum (1 + v_k)^2 / 2

with the optional penalty P(lambda) = (|lambda| - cap)_+^2 / 2 of the capped
dual. `gendiag.metrics.gel.dual.solve` minimises them; the formulas and
references are in that module's docstring.
"""

import jax
from jax import lax
import jax.numpy as jnp

HIGHEST = lax.Precision.HIGHEST


def _pseudo_log(y, eps):
  """Owen's log*: log y for y >= eps, else the matching quadratic."""
  safe = jnp.maximum(y, eps)
  quad = (jnp.log(eps) - 1.5 + 2.0 * y / eps - 0.5 * (y / eps) ** 2)
  return jnp.where(y >= eps, jnp.log(safe), quad)


def _pseudo_log_d1(y, eps):
  return jnp.where(y >= eps, 1.0 / jnp.maximum(y, eps), 2.0 / eps - y / eps ** 2)


def _pseudo_log_d2(y, eps):  # minus the second derivative (>= 0)
  return jnp.where(y >= eps, 1.0 / jnp.maximum(y, eps) ** 2, 1.0 / eps ** 2)


def penalty(lam, cap):
  """P(lambda) = (|lambda| - cap)_+^2 / 2, its gradient and Hessian.

  Zero (with its gradient) on the ball |lambda| <= cap; beyond it the
  gradient is e lambda/|lambda| and the Hessian (e/s) I + (cap/s) l l^T
  (s = |lambda|, e = s - cap, l = lambda/s).
  """
  tiny = jnp.finfo(lam.dtype).tiny
  size = jnp.sqrt(jnp.maximum(jnp.sum(lam * lam), tiny))  # differentiable at 0
  excess = jnp.maximum(size - cap, 0.0)
  unit, ratio = lam / size, excess / size
  hess = jnp.where(excess > 0, ratio * jnp.eye(lam.shape[0], dtype=lam.dtype)
                   + (1.0 - ratio) * jnp.outer(unit, unit), 0.0)
  return 0.5 * excess ** 2, excess * unit, hess


def terms(objective, v, mask, count):
  """Dual value, normalised weights and Hessian row weights at v = Z lambda.

  Returns (f, w, h, rank_one): H = Z^T diag(h) Z - [rank_one] g g^T and the
  gradient g = c Z^T w (the scalar c is `gradient`'s).
  """
  if objective == "et":
    logits = jnp.where(mask, v, -jnp.inf)
    f = jax.nn.logsumexp(logits)
    w = jnp.where(mask, jnp.exp(logits - f), 0.0)
    return f, w, w, True
  y = 1.0 + v
  if objective == "el":
    eps = 1.0 / count
    f = -jnp.sum(jnp.where(mask, _pseudo_log(y, eps), 0.0)) / count
    d1 = jnp.where(mask, _pseudo_log_d1(y, eps), 0.0)
    h = jnp.where(mask, _pseudo_log_d2(y, eps), 0.0) / count
  else:  # cue
    f = 0.5 * jnp.sum(jnp.where(mask, y * y, 0.0)) / count
    d1 = jnp.where(mask, y, 0.0)
    h = mask.astype(v.dtype) / count
  total = jnp.sum(d1)
  w = d1 / jnp.where(total == 0, 1.0, total)
  return f, w, h, False


def gradient(objective, zt_w, v, mask, count):
  """Gradient of f from Z^T w (w normalised) and the raw weight total."""
  if objective == "et":
    return zt_w
  y = 1.0 + v
  if objective == "el":
    total = jnp.sum(jnp.where(mask, _pseudo_log_d1(y, 1.0 / count), 0.0))
    return -zt_w * total / count
  total = jnp.sum(jnp.where(mask, y, 0.0))
  return zt_w * total / count


def delta(objective, v, u, t, mask, count, w):
  """f(lambda + t d) - f(lambda) without cancellation (u = Z d), and a bound
  on its rounding error (eps times the magnitude of its terms)."""
  tu = t * u
  eps = jnp.finfo(v.dtype).eps
  if objective == "et":
    terms = jnp.where(mask, w * jnp.expm1(tu), 0.0)
    total = jnp.sum(terms)
    noise = eps * jnp.sum(jnp.abs(terms)) / jnp.maximum(1.0 + total, eps)
    return jnp.log1p(total), noise
  y = 1.0 + v
  if objective == "el":
    floor = 1.0 / count
    both = (y >= floor) & (y + tu >= floor)
    diff = jnp.where(both, jnp.log1p(tu / jnp.where(both, y, 1.0)),
                     _pseudo_log(y + tu, floor) - _pseudo_log(y, floor))
    diff = jnp.where(mask, diff, 0.0)
    return -jnp.sum(diff) / count, eps * jnp.sum(jnp.abs(diff)) / count
  terms = jnp.where(mask, tu * y + 0.5 * tu * tu, 0.0)
  return jnp.sum(terms) / count, eps * jnp.sum(jnp.abs(terms)) / count


def capped_gap(lam, g, cap):
  """Duality gap of ET's penalised dual at lambda (g its gradient there).

  With r = sum_k w_k z_k (w = softmax(Z lambda)), the primal
  KL(w || u) + cap |r| + |r|^2 / 2 exceeds the dual log N - f(lambda) -
  P(lambda) by lambda.r + cap |r| + |r|^2 / 2 + P(lambda) >= 0
  (Fenchel-Young), which is 0 only at the optimum: the statistic computed
  from w is within 2 N times this gap of the exact one.
  """
  pen, grad_p, _ = penalty(lam, cap)
  r = g - grad_p
  size = jnp.linalg.norm(r)
  return (jnp.dot(lam, r, precision=HIGHEST) + cap * size + 0.5 * size * size
          + pen)


def two_loop(g, s_hist, y_hist, rho, precondition):
  """L-BFGS two-loop recursion: approximately H^{-1} g (newest pair last).

  Empty slots have rho = 0 and drop out.
  """
  size = s_hist.shape[0]

  def backward(i, carry):
    q, alphas = carry
    j = size - 1 - i
    a = rho[j] * jnp.dot(s_hist[j], q, precision=HIGHEST)
    return q - a * y_hist[j], alphas.at[j].set(a)

  q, alphas = lax.fori_loop(0, size, backward, (g, jnp.zeros_like(rho)))

  def forward(i, r):
    b = rho[i] * jnp.dot(y_hist[i], r, precision=HIGHEST)
    return r + (alphas[i] - b) * s_hist[i]

  return lax.fori_loop(0, size, forward, precondition(q))


def hessian(objective, lam, phi, signs, mask, count, ridge, cap=None):
  """H(lambda) + ridge tr(H)/J I and the gradient g(lambda) (of f + P with
  a `cap`)."""
  v = signs * jnp.matmul(phi, lam, precision=HIGHEST)
  _, w, h, rank_one = terms(objective, v, mask, count)
  g = gradient(objective, jnp.matmul(phi.T, signs * w, precision=HIGHEST), v,
               mask, count)
  hess = jnp.matmul(phi.T, phi * h[:, None], precision=HIGHEST)
  if rank_one:
    hess = hess - jnp.outer(g, g)
  if cap is not None:
    _, grad_p, hess_p = penalty(lam, cap)
    g, hess = g + grad_p, hess + hess_p
  num_moments = phi.shape[1]
  scale = jnp.maximum(jnp.trace(hess) / num_moments, jnp.finfo(phi.dtype).tiny)
  return hess + ridge * scale * jnp.eye(num_moments, dtype=phi.dtype), g
