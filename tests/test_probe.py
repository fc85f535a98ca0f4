"""The real-vs-generated probe: Bayes log-odds, density ratios, ensembles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gendiag.ops import probe as probe_lib


def _gaussians(seed, n_real, n_gen, mu=1.0, d=2):
  rng = np.random.default_rng(seed)
  shift = np.zeros(d, np.float32)
  shift[0] = mu
  real = (rng.normal(size=(n_real, d)) + shift / 2).astype(np.float32)
  gen = (rng.normal(size=(n_gen, d)) - shift / 2).astype(np.float32)
  return real, gen


def test_logistic_probe_recovers_the_log_density_ratio():
  # P = N(+e1/2, I), Q = N(-e1/2, I): log dP/dQ(x) = x_1. Unequal class sizes
  # check the prior correction log(N_g / N_r).
  real, gen = _gaussians(0, 1500, 4500)
  probe = probe_lib.fit_probe(real, gen, key=jax.random.key(0),
                              num_steps=400, learning_rate=0.05)
  x = np.stack([np.linspace(-2, 2, 9), np.zeros(9)], axis=1).astype(np.float32)
  np.testing.assert_allclose(probe_lib.log_density_ratio(probe, x), x[:, 0],
                             atol=0.15)
  np.testing.assert_allclose(probe_lib.probe_logits(probe, x),
                             x[:, 0] + math.log(1500 / 4500), atol=0.15)
  assert probe.num_real == 1500 and probe.num_generated == 4500
  assert float(probe.grad_norm) < 1e-2
  assert float(probe.train_loss) < math.log(2)


def test_standardisation_makes_it_scale_invariant_and_handles_constants():
  real, gen = _gaussians(1, 300, 300, mu=3.0, d=3)
  real[:, 2] = gen[:, 2] = 7.0  # a constant feature
  key = jax.random.key(1)
  a = probe_lib.fit_probe(real, gen, key=key, num_steps=200)
  b = probe_lib.fit_probe(real * 100 + 5, gen * 100 + 5, key=key,
                          num_steps=200)
  la = probe_lib.probe_logits(a, real)
  lb = probe_lib.probe_logits(b, real * 100 + 5)
  assert bool(jnp.all(jnp.isfinite(la)))
  np.testing.assert_allclose(la, lb, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(a.scale[2], 1.0)


def test_mlp_separates_what_a_linear_probe_cannot():
  rng = np.random.default_rng(2)
  angle = rng.uniform(0, 2 * np.pi, 800)
  ring = np.stack([np.cos(angle), np.sin(angle)], 1) * 3
  real = (ring + 0.2 * rng.normal(size=(800, 2))).astype(np.float32)
  gen = (0.5 * rng.normal(size=(800, 2))).astype(np.float32)
  key = jax.random.key(2)
  lin_r, lin_g = probe_lib.heldout_logits(real, gen, key=key, num_steps=300)
  mlp_r, mlp_g = probe_lib.heldout_logits(real, gen, key=key, num_steps=300,
                                          hidden_sizes=(32,),
                                          learning_rate=0.02)
  acc = lambda r, g: 0.5 * (np.mean(r > 0) + np.mean(g < 0))  # noqa: E731
  assert acc(lin_r, lin_g) < 0.7
  assert acc(mlp_r, mlp_g) > 0.95
  assert lin_r.shape == (400,) and lin_g.shape == (400,)


def test_vmap_and_jit_over_keys_equal_a_loop_and_minibatches_are_seeded():
  real, gen = _gaussians(3, 200, 150, mu=2.0)
  keys = jax.random.split(jax.random.key(3), 3)
  kwargs = dict(num_steps=50, batch_size=64)
  fit = lambda k: probe_lib.fit_probe(real, gen, key=k, **kwargs)  # noqa: E731
  ensemble = jax.vmap(fit)(keys)
  assert ensemble.mean.shape == (3, 2)
  logits = jax.vmap(probe_lib.probe_logits, in_axes=(0, None))(ensemble, real)
  for i in range(3):
    one = fit(keys[i])
    np.testing.assert_allclose(logits[i], probe_lib.probe_logits(one, real),
                               rtol=1e-4, atol=1e-5)
  again = fit(keys[0])
  np.testing.assert_array_equal(probe_lib.probe_logits(again, real),
                                probe_lib.probe_logits(fit(keys[0]), real))
  assert not np.allclose(logits[0], logits[1])
  # An outer jit (the public function's checks run on tracers) agrees.
  jitted = jax.jit(lambda k: probe_lib.probe_logits(fit(k), real))(keys[0])
  np.testing.assert_allclose(jitted, logits[0], rtol=1e-4, atol=1e-5)


def test_train_test_split_partitions_each_set():
  real = np.arange(20, dtype=np.float32)[:, None]
  gen = -np.arange(1, 11, dtype=np.float32)[:, None]
  r_tr, r_te, g_tr, g_te = probe_lib.train_test_split(
      real, gen, key=jax.random.key(5), test_fraction=0.3)
  assert r_te.shape == (6, 1) and g_te.shape == (3, 1)
  np.testing.assert_array_equal(np.sort(np.concatenate([r_tr, r_te])[:, 0]),
                                real[:, 0])
  np.testing.assert_array_equal(np.sort(np.concatenate([g_tr, g_te])[:, 0]),
                                np.sort(gen[:, 0]))


def test_bad_inputs_raise():
  real, gen = _gaussians(6, 10, 10)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="test_fraction"):
    probe_lib.heldout_logits(real, gen, key=key, test_fraction=1.0)
  with pytest.raises(ValueError, match="same feature extractor"):
    probe_lib.fit_probe(real, gen[:, :1], key=key)
  with pytest.raises(ValueError, match="num_steps"):
    probe_lib.fit_probe(real, gen, key=key, num_steps=0)
  with pytest.raises(ValueError, match="batch_size"):
    probe_lib.fit_probe(real, gen, key=key, batch_size=-2)
  bad = real.copy()
  bad[0, 0] = np.inf
  with pytest.raises(ValueError, match="NaN or inf"):
    probe_lib.fit_probe(bad, gen, key=key)
  with pytest.raises(ValueError, match="at least 2"):
    probe_lib.heldout_logits(real[:1], gen, key=key)


def _bce_value_and_grad(params, z, y):
  """The autodiff objective the blocked linear gradient replaces."""
  def loss(p):
    logits = probe_lib._MLP(()).apply({"params": p}, z)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))
  return jax.value_and_grad(loss)(params)


def _autodiff_fit(real, gen, key, num_steps, learning_rate=1e-2,
                  weight_decay=1e-4):
  """The full-batch linear probe by autodiff (the formula before blocking)."""
  x = jnp.concatenate([real, gen])
  y = jnp.concatenate([jnp.ones(len(real)), jnp.zeros(len(gen))])
  std = jnp.std(x, axis=0)
  z = (x - jnp.mean(x, axis=0)) / jnp.where(std > 0, std, 1.0)
  key_init, _ = jax.random.split(key)
  params = probe_lib._MLP(()).init(key_init, z[:1])["params"]
  opt = optax.adamw(learning_rate, weight_decay=weight_decay,
                    mask=lambda p: jax.tree.map(lambda a: a.ndim > 1, p))

  def step(carry, _):
    p, state = carry
    updates, state = opt.update(_bce_value_and_grad(p, z, y)[1], state, p)
    return (optax.apply_updates(p, updates), state), None

  params = jax.lax.scan(step, (params, opt.init(params)), None,
                        length=num_steps)[0][0]
  loss, grads = _bce_value_and_grad(params, z, y)
  return params, loss, optax.tree.norm(grads)


@pytest.mark.parametrize("block_rows", [7, 10, 50])
def test_blocked_linear_gradient_equals_autodiff(block_rows):
  # 50 rows: blocks of 7 end with one overlapping the block before it (rows
  # 43-49 of which 49 is new), of 10 tile exactly, of 50 are one block.
  rng = np.random.default_rng(7)
  z = jnp.asarray(rng.normal(size=(50, 6)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 2, 50), jnp.float32)
  params = {"Dense_0": {
      "kernel": jnp.asarray(rng.normal(size=(6, 1)), jnp.float32),
      "bias": jnp.asarray([0.3], jnp.float32)}}
  loss, grads = probe_lib._linear_loss_grad(params, z, y, block_rows)
  want_loss, want_grads = _bce_value_and_grad(params, z, y)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # Vmapped over parameter sets (as over probe keys): each is the same.
  stacked = jax.tree.map(lambda a: jnp.stack([a, -a, 2 * a]), params)
  losses, g = jax.vmap(
      lambda p: probe_lib._linear_loss_grad(p, z, y, block_rows))(stacked)
  for i in range(3):
    one = jax.tree.map(lambda a, i=i: a[i], stacked)
    want_loss, want_grads = _bce_value_and_grad(one, z, y)
    np.testing.assert_allclose(losses[i], want_loss, rtol=1e-6)
    np.testing.assert_allclose(g["Dense_0"]["kernel"][i],
                               want_grads["Dense_0"]["kernel"], rtol=1e-5,
                               atol=1e-7)


def test_blocked_linear_fit_equals_the_autodiff_fit(monkeypatch):
  # 500 rows of 8 features in blocks of 64 rows (the last one overlapping),
  # 500 AdamW steps: the same probe as the autodiff formula, alone and
  # vmapped over keys.
  real, gen = _gaussians(8, 300, 200, mu=1.0, d=8)
  monkeypatch.setattr(probe_lib, "_BLOCK_BYTES", 64 * 8 * 4)
  assert probe_lib._block_rows(500, 8) == 64
  keys = jax.random.split(jax.random.key(8), 3)
  fit = lambda k: probe_lib._fit.__wrapped__(  # noqa: E731  (retraced)
      jnp.asarray(real), jnp.asarray(gen), k, 1e-2, 1e-4, hidden_sizes=(),
      num_steps=500, batch_size=None)
  ensemble = jax.jit(jax.vmap(fit))(keys)
  for i in range(3):
    params, loss, gnorm = _autodiff_fit(real, gen, keys[i], 500)
    for got in (fit(keys[i]), jax.tree.map(lambda a, i=i: a[i], ensemble)):
      np.testing.assert_allclose(got[0]["Dense_0"]["kernel"],
                                 params["Dense_0"]["kernel"], rtol=1e-5)
      np.testing.assert_allclose(got[0]["Dense_0"]["bias"],
                                 params["Dense_0"]["bias"], rtol=1e-5,
                                 atol=1e-7)
      np.testing.assert_allclose(got[3], loss, rtol=1e-6)
      np.testing.assert_allclose(got[4], gnorm, rtol=1e-3, atol=1e-6)
