"""The benchmark protocol of DESIGN.md, shared by every case.

A case is a function `(sizes: dict) -> Bench` registered with `@case(name)`.
It builds its inputs (seeded numpy float32) and returns callables; the runner
times them:

  reference  jnp float32 4096^3 matmul at Precision.HIGHEST, median of 3 after
             a warm-up, measured in the same process as the case
  gendiag    first call (compile included) and median of 3 warm calls;
             FLOPs from shapes / warm time, as a fraction of the reference
  peers      each peer callable, default threads, median of 3 (first call
             reported too); ratio = peer median / gendiag warm median
  memory     peak RSS of a fresh subprocess that only runs `Bench.run` once
  shards     per-device array sizes from shapes (`per_shard_sizes`) for the
             ring layout of `gendiag.ops.distances` at several device counts,
             so multi-device memory can be read off without the devices
"""

import dataclasses
import math
import statistics
import time
from typing import Callable, Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

CASES: Dict[str, Callable] = {}


class SkipCase(Exception):
  """Raised by a case that cannot run here (e.g. weights the user lacks);
  the runner records the reason instead of a measurement."""


@dataclasses.dataclass
class Bench:
  """What a case returns.

  Attributes:
    run: no-argument callable running the gendiag op (result is blocked on).
    flops: floating-point operations of `run`, counted from shapes (0 if
      the op is not matmul-bound; the FLOP fraction is then omitted).
    peers: name -> no-argument callable computing the same thing.
    repeats: warm calls to take the median of.
    peer_repeats: calls of each peer (they can be slow).
    notes: one line on what is measured.
    details: optional callable of `run`'s result returning extra JSON-ready
      figures for the results (e.g. the main job's per-family seconds).
  """
  run: Callable[[], object]
  flops: float = 0.0
  peers: Dict[str, Callable[[], object]] = dataclasses.field(
      default_factory=dict)
  repeats: int = 3
  peer_repeats: int = 3
  notes: str = ""
  details: Optional[Callable[[object], dict]] = None


def case(name: str):
  def wrap(fn):
    if name in CASES:
      raise ValueError(f"benchmark case {name!r} registered twice.")
    CASES[name] = fn
    return fn
  return wrap


def block(x):
  return jax.tree.map(
      lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
      x)


def timed(fn) -> float:
  start = time.perf_counter()
  block(fn())
  return time.perf_counter() - start


def reference_rate(size: int = 4096, repeats: int = 3) -> float:
  """float32 matmul FLOP/s at Precision.HIGHEST (the machine's peak proxy)."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (size, size), jnp.float32)
  b = jax.random.normal(key_b, (size, size), jnp.float32)
  matmul = jax.jit(lambda x, y: jnp.matmul(x, y,
                                           precision=jax.lax.Precision.HIGHEST))
  timed(lambda: matmul(a, b))
  seconds = statistics.median(timed(lambda: matmul(a, b))
                              for _ in range(repeats))
  return 2.0 * size ** 3 / seconds


def measure(bench: Bench, rate: float) -> dict:
  """Times a case's gendiag op and its peers per the protocol."""
  first = timed(bench.run)
  warm = statistics.median(timed(bench.run) for _ in range(bench.repeats))
  out = {"first_call_s": first, "warm_median_s": warm,
         "compile_overhead_s": max(first - warm, 0.0), "notes": bench.notes,
         "flops": bench.flops, "peers": {}}
  if bench.flops:
    out["flop_fraction_of_matmul_rate"] = bench.flops / warm / rate
  for name, peer in bench.peers.items():
    times = [timed(peer) for _ in range(bench.peer_repeats)]
    med = statistics.median(times)
    out["peers"][name] = {
        "first_s": times[0], "median_s": med,
        "ratio_peer_over_gendiag_warm": med / warm,
        "ratio_peer_over_gendiag_first_call": med / first}
  return out


def random_features(seed: int, n: int, d: int, shift: float = 0.0):
  """Seeded float32 'Inception-like' features: ReLU of a low-rank map + noise."""
  rng = np.random.default_rng(seed)
  rank = min(64, d)
  proj = rng.standard_normal((rank, d), dtype=np.float32) / np.sqrt(rank)
  codes = rng.standard_normal((n, rank), dtype=np.float32)
  # Filled in row chunks (the same random stream as one draw), so making the
  # data costs n x d float32 and not several n x d temporaries: peak RSS
  # then measures the op, not the harness.
  out = np.empty((n, d), np.float32)
  for start in range(0, n, 4096):
    stop = min(start + 4096, n)
    noise = rng.uniform(size=(stop - start, d)).astype(np.float32)
    out[start:stop] = (np.maximum(codes[start:stop] @ proj + shift, 0.0)
                       + 0.3 + 0.1 * noise)
  return out


def random_pair(sizes):
  """A case's host feature pair: (n, d) features and (m, d) shifted ones."""
  return (random_features(0, sizes["n"], sizes["d"]),
          random_features(1, sizes["m"], sizes["d"], 0.05))


DEVICE_COUNTS = (1, 2, 4, 8)


def per_shard_sizes(sizes: dict, device_counts: Iterable[int] = DEVICE_COUNTS,
                    bytes_per_float: int = 4) -> Dict[str, dict]:
  """Per-device array sizes of a case under `mesh=` sharding, from shapes.

  The layout of `gendiag.ops.distances` with D devices: rows of x (n) and y
  (m, default n) are zero-padded to multiples of D and split; each ring
  step holds the local x shard, the y shard being used and the one arriving
  (ppermute), and one distance block of min(block_size, n/D) x m/D floats.
  `peak_bytes` adds these up: what one device needs for the blocked passes,
  apart from small per-row results.

  Args:
    sizes: a case's sizes (needs "n" and "d"; "m" and "block_size" are
      optional, block_size defaulting to the ops' default).
    device_counts: D values to report.
    bytes_per_float: 4 for float32 features.

  Returns:
    {str(D): {rows_x, rows_y, x_shard_bytes, y_shard_bytes, block_bytes,
    peak_bytes}}, or {} when the case has no n and d.
  """
  if "n" not in sizes or "d" not in sizes:
    return {}
  from gendiag.ops import distances  # pylint: disable=g-import-not-at-top
  n, d = int(sizes["n"]), int(sizes["d"])
  m = int(sizes.get("m", n))
  block_size = int(sizes.get("block_size", distances.DEFAULT_BLOCK_SIZE))
  out = {}
  for count in sorted(set(int(c) for c in device_counts)):
    rows_x, rows_y = math.ceil(n / count), math.ceil(m / count)
    x_bytes = rows_x * d * bytes_per_float
    y_bytes = rows_y * d * bytes_per_float
    block = min(block_size, rows_x) * rows_y * bytes_per_float
    out[str(count)] = {"rows_x": rows_x, "rows_y": rows_y,
                       "x_shard_bytes": x_bytes, "y_shard_bytes": y_bytes,
                       "block_bytes": block,
                       "peak_bytes": x_bytes + 2 * y_bytes + block}
  return out
