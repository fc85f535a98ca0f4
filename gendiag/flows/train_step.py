"""The flow trainer's jitted steps: optimisers, state, one step, chunks.

`gendiag.flows.trainer.train` runs these. `config` is a
`trainer.TrainConfig`. One step (critic objectives first take
`critic_steps` critic steps, each on a fresh data batch and fresh flow
samples):

  critic:  phi <- phi - adam(grad_phi critic_loss)
  flow:    theta <- theta - adam(clip(grad_theta flow_loss, grad_clip))

Step t is a pure function of (state, t): its minibatch indices and sampling
keys come from fold_in(key, t).
"""

import functools

import jax
import jax.numpy as jnp
import optax

from gendiag.flows import losses


def optimizers(config):
  """(flow optimiser, critic optimiser) of a TrainConfig.

  Flow: Adam, after a global-norm clip at `grad_clip` (none at 0). Critic:
  AdamW with decoupled weight decay `critic_weight_decay` (Loshchilov &
  Hutter 2019), plain Adam at 0.
  """
  flow_opt = optax.adam(config.learning_rate)
  if config.grad_clip:
    flow_opt = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                           flow_opt)
  if config.critic_weight_decay:
    critic_opt = optax.adamw(config.critic_learning_rate,
                             weight_decay=config.critic_weight_decay)
  else:
    critic_opt = optax.adam(config.critic_learning_rate)
  return flow_opt, critic_opt


def init_state(flow, objective, config, key, init_params=None):
  """The step-0 training state (a plain pytree)."""
  key_flow, key_critic = jax.random.split(jax.random.split(key)[0])
  params = flow.init(key_flow) if init_params is None else init_params
  flow_opt, critic_opt = optimizers(config)
  state = {"params": params, "opt_state": flow_opt.init(params),
           "step": jnp.zeros((), jnp.int32)}
  if objective.uses_critic:
    critic_params = objective.init_critic(flow, key_critic)
    state["critic_params"] = critic_params
    state["critic_opt_state"] = critic_opt.init(critic_params)
  return state


def batch_at(data, labels, key, batch_size):
  """`batch_size` rows (and their labels) drawn with replacement by `key`."""
  idx = jax.random.randint(key, (batch_size,), 0, data.shape[0])
  return losses.Batch(data[idx], None if labels is None else labels[idx])


def make_critic_update(flow, objective, config):
  """update(state, data, labels, key) -> (state, loss, aux): one critic step."""
  critic_opt = optimizers(config)[1]
  critic_grad = jax.value_and_grad(objective.critic_loss, argnums=1,
                                   has_aux=True)

  def update(state, data, labels, key):
    kb, ks = jax.random.split(key)
    (closs, caux), cg = critic_grad(
        flow, state["critic_params"], state["params"],
        batch_at(data, labels, kb, config.batch_size), ks)
    updates, cs = critic_opt.update(cg, state["critic_opt_state"],
                                    state["critic_params"])
    state = dict(state, critic_params=optax.apply_updates(
        state["critic_params"], updates), critic_opt_state=cs)
    return state, closs, caux

  return update


def make_step(flow, objective, config):
  """step(state, data, labels, key, t) -> (state, metrics): one pure step."""
  flow_opt = optimizers(config)[0]
  flow_grad = jax.value_and_grad(objective.flow_loss, argnums=1, has_aux=True)
  critic_update = make_critic_update(flow, objective, config)

  def step(state, data, labels, key, t):
    key_t = jax.random.fold_in(key, t)
    key_batch, key_critic, key_flow = jax.random.split(key_t, 3)
    metrics = {}
    state = dict(state)
    if objective.uses_critic:
      for j in range(config.critic_steps):
        state, closs, caux = critic_update(
            state, data, labels, jax.random.fold_in(key_critic, j))
      metrics["critic_loss"] = closs
      metrics.update(caux)
    (loss, aux), grads = flow_grad(
        flow, state["params"], state.get("critic_params", {}),
        batch_at(data, labels, key_batch, config.batch_size), key_flow)
    updates, state["opt_state"] = flow_opt.update(grads, state["opt_state"],
                                                  state["params"])
    state["params"] = optax.apply_updates(state["params"], updates)
    state["step"] = state["step"] + 1
    metrics.update(aux)
    metrics["loss"] = loss
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state, metrics

  return step


@functools.lru_cache(maxsize=16)
def make_critic_warmup(flow, objective, config):
  """Jitted warmup(state, data, labels, key) -> (state, critic losses).

  `config.critic_warmup_steps` critic steps against the fixed flow.
  """
  critic_update = make_critic_update(flow, objective, config)

  def warmup(state, data, labels, key):
    def body(s, k):
      s, closs, _ = critic_update(s, data, labels, k)
      return s, closs
    return jax.lax.scan(body, state, jax.random.split(
        key, config.critic_warmup_steps))

  return jax.jit(warmup)


@functools.lru_cache(maxsize=16)
def make_chunk(flow, objective, config):
  """Jitted run(state, data, labels, key, start, stop): steps start..stop-1.

  A `lax.fori_loop` with traced bounds, so one compilation serves every
  chunk length; per-step metrics go to buffers of min(log_every,
  checkpoint_every) entries (the longest chunk), NaN past `stop - start`.
  Cached on its (hashable, frozen) arguments, so a resumed or repeated run
  in the same process reuses the compiled program.
  """
  step = make_step(flow, objective, config)
  size = min(config.log_every, config.checkpoint_every)

  def run(state, data, labels, key, start, stop):
    shapes = jax.eval_shape(step, state, data, labels, key, start)[1]
    buffers = jax.tree.map(lambda a: jnp.full((size,), jnp.nan, a.dtype),
                           shapes)

    def body(t, carry):
      s, buf = carry
      s, metrics = step(s, data, labels, key, t)
      buf = jax.tree.map(lambda b, v: b.at[t - start].set(v), buf, metrics)
      return s, buf

    return jax.lax.fori_loop(start, stop, body, (state, buffers))

  return jax.jit(run)
