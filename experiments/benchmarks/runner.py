"""The benchmark runner behind experiments/benchmark.py (its flags and main).

Each case runs in two fresh subprocesses of the binary: one measures the
reference matmul rate, the op's first and warm calls and the peers
(protocol in `common`); the other runs only the op once and reports its
peak RSS. Results: benchmark.json and benchmark.md in --workdir, with each
case's per-device shard and block sizes under `mesh=` for D = 1, 2, 4, 8 and
the devices of this run (computed from shapes; see common.per_shard_sizes).
Imported as `benchmarks.runner`: the binary's directory (experiments/) is on
sys.path.
"""

import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

import benchmarks as cases_lib
from benchmarks import common
from gendiag import report
from gendiag.report import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "experiments", "benchmark.py")

config_flags.DEFINE_config_file(
    "config", os.path.join(ROOT, "configs", "benchmark.py"),
    "Benchmark config.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where to write benchmark.json/.md.")
flags.DEFINE_enum("worker", None, ["time", "memory"],
                  "Internal: run one case in this process.")
flags.DEFINE_string("case", None, "Internal: the case a worker runs.")
FLAGS = flags.FLAGS

SINGLE_THREAD_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                 "intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def _worker(config, name):
  cases_lib.load_all()
  sizes = dict(config.sizes[name])
  try:
    bench = common.CASES[name](sizes)
  except common.SkipCase as e:
    print(json.dumps({"skipped": str(e), "sizes": sizes}))
    return
  if FLAGS.worker == "memory":
    start = time.perf_counter()
    result = common.block(bench.run())
    seconds = time.perf_counter() - start
    peak = registry.peak_rss_bytes()
    out = {"peak_rss_bytes": peak, "single_call_s": seconds, "sizes": sizes}
    if bench.details is not None:
      out["details"] = bench.details(result)
    print(json.dumps(out))
    return
  rate = common.reference_rate()
  out = common.measure(bench, rate)
  out["reference_matmul_flops_per_s"] = rate
  out["sizes"] = sizes
  out["devices"] = {"count": jax.device_count(),
                    "platform": jax.devices()[0].platform,
                    "kind": jax.devices()[0].device_kind}
  out["per_shard"] = common.per_shard_sizes(
      sizes, common.DEVICE_COUNTS + (jax.device_count(),))
  print(json.dumps(out))


def _spawn(mode, name, single_thread):
  env = dict(os.environ)
  if single_thread:
    env.update(SINGLE_THREAD_ENV)
  cmd = [sys.executable, BINARY, f"--worker={mode}",
         f"--case={name}", "--workdir=unused",
         f"--config={FLAGS['config'].config_filename}"]
  cmd += [f"--config.{k}={v}" for k, v in _overrides()]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"benchmark {mode} worker for {name} failed:\n"
                       f"{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _overrides():
  """--config.* flags given on our own command line, passed to workers."""
  for arg in sys.argv[1:]:
    if arg.startswith("--config.") and "=" in arg:
      key, value = arg[len("--config."):].split("=", 1)
      yield key, value


def _markdown(results):
  lines = ["| case | sizes | first call (s) | warm (s) | % of matmul rate | "
           "peak RSS (GiB) | peers: median s (peer/gendiag warm, /first) |",
           "|---|---|---|---|---|---|---|"]
  for name, r in results.items():
    if "skipped" in r:
      lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
      continue
    frac = r.get("flop_fraction_of_matmul_rate")
    peers = "; ".join(
        f"{p}: {v['median_s']:.2f} s ({v['ratio_peer_over_gendiag_warm']:.1f}x, "
        f"{v['ratio_peer_over_gendiag_first_call']:.1f}x)"
        for p, v in r.get("peers", {}).items())
    sizes = ", ".join(f"{k}={v}" for k, v in r["sizes"].items())
    first = r.get("first_call_s", r["single_call_s"])
    warm = ("(one call only)" if r.get("memory_only")
            else f"{r['warm_median_s']:.3f}")
    lines.append(
        f"| {name} | {sizes} | {first:.2f} | "
        f"{warm} | {'' if frac is None else f'{100*frac:.0f}%'}"
        f" | {r['peak_rss_bytes'] / 2**30:.2f} | {peers} |")
  rate = next((r["reference_matmul_flops_per_s"] for r in results.values()
               if "reference_matmul_flops_per_s" in r), None)
  # Memory-only cases (the main job) skip the reference matmul.
  rate_text = ("not measured (only memory-only cases ran)" if rate is None
               else f"{rate / 1e9:.1f} GFLOP/s")
  lines.append("")
  lines.append(f"Reference float32 matmul rate (4096^3, HIGHEST): {rate_text}. "
               f"CPU: {platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores.")
  lines += _shard_markdown(results)
  lines += _family_markdown(results)
  return "\n".join(lines)


def _family_markdown(results):
  """Per-family seconds of the cases that report them (the main job)."""
  timed = {name: r["details"]["family_seconds"] for name, r in results.items()
           if "family_seconds" in r.get("details", {})}
  if not timed:
    return []
  # Columns in the order the families run (metrics.json sorts its keys).
  run_order = {name: i for i, name in enumerate(report.REGISTRY)}
  families = sorted(dict.fromkeys(f for t in timed.values() for f in t),
                    key=lambda f: run_order.get(f, len(run_order)))
  lines = ["", "Main job, seconds per family (and the whole job, data loading "
           "and report writing included):", "",
           "| case | " + " | ".join(families) + " | job | peak RSS (GiB) |",
           "|---|" + "---|" * (len(families) + 2)]
  for name, seconds in timed.items():
    r = results[name]
    cells = [f"{seconds[f]:.1f}" if f in seconds else "" for f in families]
    lines.append(f"| {name} | " + " | ".join(cells) +
                 f" | {r['details']['job_seconds']:.1f} | "
                 f"{r['peak_rss_bytes'] / 2**30:.2f} |")
  peaks = {name: r["details"]["family_peak_rss_gib"]
           for name, r in results.items()
           if name in timed and r["details"].get("family_peak_rss_gib")}
  if peaks:
    lines += ["", "The process's peak RSS (GiB) when each family finished "
              "(a high-water mark; families in the order they ran, so the first "
              "one at the job's maximum set it):", "",
              "| case | " + " | ".join(families) + " |",
              "|---|" + "---|" * len(families)]
    for name, peak in peaks.items():
      lines.append(f"| {name} | " + " | ".join(
          f"{peak[f]:.2f}" if f in peak else "" for f in families) + " |")
  return lines


def _shard_markdown(results):
  """Per-device sizes with `mesh=` (from shapes, not measured)."""
  sharded = {name: r["per_shard"] for name, r in results.items()
             if r.get("per_shard")}
  if not sharded:
    return []
  counts = sorted({int(c) for p in sharded.values() for c in p})
  device = next(iter(results.values())).get("devices", {})
  mb = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
  lines = ["", f"Per-device memory with `mesh=` over D devices, from shapes "
           f"(float32 x shard + 2 y shards + one distance block, MiB; this "
           f"run saw {device.get('count', '?')} "
           f"{device.get('platform', '')} device(s)):", "",
           "| case | " + " | ".join(f"D={c}" for c in counts) + " |",
           "|---|" + "---|" * len(counts)]
  for name, per in sharded.items():
    cells = []
    for c in counts:
      p = per.get(str(c))
      cells.append("" if p is None else
                   f"{mb(p['peak_bytes'])} (block {mb(p['block_bytes'])})")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.worker:
    _worker(config, FLAGS.case)
    return
  cases_lib.load_all()
  names = (list(common.CASES) if config.cases == "all"
           else [c.strip() for c in config.cases.split(",")])
  unknown = [n for n in names if n not in common.CASES]
  if unknown:
    raise app.UsageError(f"unknown cases {unknown}; have {sorted(common.CASES)}")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  results = {}
  for name in names:
    single = name in config.single_thread_cases.split(",")
    logging.info("case %s (%s)", name, "1 thread" if single else "all threads")
    memory_only = name in config.memory_only_cases.split(",")
    results[name] = {} if memory_only else _spawn("time", name, single)
    if "skipped" not in results[name]:
      results[name].update(_spawn("memory", name, single))
    results[name]["memory_only"] = memory_only
    results[name]["single_thread"] = single
    logging.info("case %s: %s", name, json.dumps(results[name]))
    with open(os.path.join(FLAGS.workdir, "benchmark.json"), "w") as f:
      json.dump(results, f, indent=2)
  with open(os.path.join(FLAGS.workdir, "benchmark.md"), "w") as f:
    f.write(_markdown(results) + "\n")
  print(_markdown(results))
