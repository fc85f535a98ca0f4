"""Benchmark cases for the flow trainer: warm training steps per second.

Each case builds the flow, objective and optimiser of a `configs/train_flow.py`
variant at its default batch size and times `sizes["steps"]` steps of the
trainer's jitted chunk (`train_step.make_chunk`, one `lax.fori_loop`), started
from the same initial state on every call. Steps per second = steps /
warm_median_s. flops = 0: the steps are small matmuls and elementwise
spline/affine maps, not matmul-bound.
"""

import os

import jax
import jax.numpy as jnp

from benchmarks import common
from gendiag import experiments
from gendiag.experiments import train_flow
from gendiag.flows import train_step

train_flow_config = experiments.load_config_module(os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "configs", "train_flow.py"))


def _flow_case(sizes, variant, **objective):
  config = train_flow_config.get_config(variant)
  config.objective.update(**objective)
  config.train.batch_size = int(sizes["batch_size"])
  steps = int(sizes["steps"])
  config.train.log_every = config.train.checkpoint_every = steps
  data = train_flow.load_data(config.data, jax.random.key(0))
  flow, obj, train_config, _ = train_flow.build(config, data)
  obj = obj.prepare(data.train)
  state = train_step.init_state(flow, obj, train_config, jax.random.key(1))
  run = train_step.make_chunk(flow, obj, train_config)
  x = jnp.asarray(data.train)
  key = jax.random.key(2)
  start, stop = jnp.int32(0), jnp.int32(steps)
  notes = (f"{steps} {obj.name} steps of a {flow.kind} flow "
           f"({flow.num_layers} layers, d={flow.dim}), batch "
           f"{train_config.batch_size}; steps/s = {steps} / warm_median_s")
  return common.Bench(run=lambda: run(state, x, None, key, start, stop),
                      flops=0.0, notes=notes)


@common.case("flow_ring_steps")
def flow_ring_steps(sizes):
  """Maximum likelihood, spline flow, 8-Gaussian ring (configs default)."""
  return _flow_case(sizes, "ring")


@common.case("flow_ring_pr_steps")
def flow_ring_pr_steps(sizes):
  """PR-divergence (lam=1), the paper's form: 2 critic steps per flow step."""
  return _flow_case(sizes, "ring", name="fdiv_adversarial", divergence="pr",
                    lam=1.0)


@common.case("flow_digits_steps")
def flow_digits_steps(sizes):
  """Maximum likelihood, spline flow on 64-d digits features."""
  return _flow_case(sizes, "digits")
