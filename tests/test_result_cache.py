"""The report's result cache: keys that change with every input, entries that
round-trip, and a second main job that loads its real-side results."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import diagnose as diagnose_config
from gendiag.experiments import diagnose
from gendiag.metrics import kid as kid_lib
from gendiag.ops import kernels
from gendiag.report import result_cache


@pytest.fixture
def cache(tmp_path):
  directory = result_cache.enable(str(tmp_path / "results"))
  yield directory
  result_cache.disable()


def _counting(fn):
  calls = []

  def wrapped(*args, **kwargs):
    calls.append(1)
    return fn(*args, **kwargs)
  wrapped.__qualname__ = fn.__qualname__ + "_counted"
  return wrapped, calls


def test_off_computes_every_time_and_writes_nothing(tmp_path):
  result_cache.disable()
  fn, calls = _counting(lambda x: x * 2)
  x = np.arange(3.0)
  for _ in range(2):
    np.testing.assert_array_equal(result_cache.cached_call("t", fn, x), x * 2)
  assert len(calls) == 2
  assert result_cache.enable("off") is None and not os.listdir(tmp_path)


def test_second_call_loads_the_same_result(cache, rng):
  x = np.float32(rng.normal(size=(60, 4)))
  fn, calls = _counting(kid_lib.kid_real_sums)
  kwargs = dict(key=jax.random.key(1), num_subsets=3, subset_size=20)
  first = result_cache.cached_call("sums", fn, x, **kwargs)
  second = result_cache.cached_call("sums", fn, x, **kwargs)
  assert len(calls) == 1
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_array_equal(a, b)
  assert result_cache.take_log() == {"loaded": ["sums"], "computed": ["sums"]}
  assert len(os.listdir(cache)) == 1
  # None: the model's own results are never cached.
  result_cache.cached_call(None, fn, x, **kwargs)
  assert len(calls) == 2 and len(os.listdir(cache)) == 1


def test_every_input_is_in_the_key(cache, rng):
  """A changed byte, dtype, keyword, PRNG key or kernel setting recomputes."""
  fn, calls = _counting(lambda x, **kw: float(jnp.sum(x)))
  x = np.float32(rng.normal(size=(8, 3)))
  y = x.copy()
  y[5, 2] = np.nextafter(y[5, 2], np.float32(np.inf))
  variants = [
      ((x,), {}), ((y,), {}), ((x.astype(np.float64),), {}),
      ((x,), {"k": 1}), ((x,), {"k": 2}),
      ((x,), {"key": jax.random.key(0)}), ((x,), {"key": jax.random.key(1)}),
      ((x,), {"kernel": kernels.Polynomial()}),
      ((x,), {"kernel": kernels.Polynomial(degree=2)}),
      ((x,), {"cfg": {"a": (1, 2)}}), ((x,), {"cfg": {"a": (1, 3)}}),
  ]
  for args, kwargs in variants:
    result_cache.cached_call("v", fn, *args, **kwargs)
  assert len(calls) == len(variants)
  for args, kwargs in variants:   # each again: all loaded
    result_cache.cached_call("v", fn, *args, **kwargs)
  assert len(calls) == len(variants)


def test_an_unkeyable_argument_is_an_error(cache):
  with pytest.raises(TypeError, match="cannot key an argument of type"):
    result_cache.cached_call("t", lambda o: 1, object())


def test_a_corrupt_entry_is_recomputed_with_a_warning(cache):
  fn, calls = _counting(lambda x: x + 1)
  x = np.arange(4.0)
  result_cache.cached_call("t", fn, x)
  (name,) = os.listdir(cache)
  with open(os.path.join(cache, name), "wb") as f:
    f.write(b"not a pickle")
  with pytest.warns(RuntimeWarning, match="unreadable result cache entry"):
    np.testing.assert_array_equal(result_cache.cached_call("t", fn, x), x + 1)
  assert len(calls) == 2
  np.testing.assert_array_equal(result_cache.cached_call("t", fn, x), x + 1)
  assert len(calls) == 2


def _files(tmp_path, rng):
  """Small feature files: real (labelled), two models, train and test."""
  means = np.float32(rng.normal(size=(4, 6)) * 3.0)

  def draw(n, modes):
    labels = rng.choice(modes, size=n)
    return np.float32(means[labels] + rng.normal(size=(n, 6))), labels
  paths = {}
  for name, n, modes in (("real", 240, range(4)), ("good", 200, range(4)),
                         ("dropped", 200, range(1, 4)),
                         ("train", 240, range(4)), ("test", 240, range(4))):
    x, labels = draw(n, list(modes))
    paths[name] = str(tmp_path / f"{name}.npy")
    np.save(paths[name], x)
    np.save(str(tmp_path / f"{name}_labels.npy"), labels)
  return paths


def test_a_second_main_job_loads_the_real_side_and_reports_the_same(
    tmp_path, rng):
  paths = _files(tmp_path, rng)
  config = diagnose_config.get_config("smoke")
  config.real, config.train, config.test = (paths["real"], paths["train"],
                                            paths["test"])
  config.real_labels = str(tmp_path / "real_labels.npy")
  config.generated = f"good={paths['good']},dropped={paths['dropped']}"
  config.generated_labels = ",".join(
      f"{m}={tmp_path}/{m}_labels.npy" for m in ("good", "dropped"))
  config.kid.subset_size = 50
  config.metrics = "fid,kid,mmd,gel,precision_recall,frontiers,fld"
  config.result_cache = str(tmp_path / "results")
  first = diagnose.run(config, str(tmp_path / "first"))
  entries = len(os.listdir(config.result_cache))
  second = diagnose.run(config, str(tmp_path / "second"))
  assert json.dumps(second["models"], sort_keys=True) == json.dumps(
      first["models"], sort_keys=True)
  assert len(os.listdir(config.result_cache)) == entries > 0
  assert second["meta"]["result_cache"] == config.result_cache
  for name in config.metrics.split(","):
    notes = " ".join(second["families"][name]["notes"])
    assert "loaded from the result cache" in notes, name
    assert "loaded from the result cache" not in " ".join(
        first["families"][name]["notes"]), name
  assert result_cache.directory() is None   # off again after the run
  # A changed real row: nothing real-side is served from before.
  real = np.load(paths["real"])
  real[7, 0] += 1.0
  np.save(paths["real"], real)
  config.metrics = "fid,frontiers"
  third = diagnose.run(config, str(tmp_path / "third"))
  for name in ("fid", "frontiers"):
    assert "loaded from the result cache" not in " ".join(
        third["families"][name]["notes"]), name
