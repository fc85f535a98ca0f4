"""The main job at the size users bring: every family on 10k (or 50k) x 2048.

main_job_10k         the README's own-features command on 10,000 real rows
                     and two models x 10,000 generated rows of 2048-d features
                     (ReLU features of a 10-mode mixture, labels given, train
                     and test sets of 10,000 each): "good" is a fresh draw of
                     the real mixture, "dropped" lacks modes 0 and 1. JAX's
                     compilation and result caches start empty (a first
                     run).
main_job_10k_cached  the same job again on the caches the previous case
                     filled (a second run: compiled programs and the
                     real-side results, `gendiag.report.result_cache`, load
                     from disk).
main_job_50k         50,000 real + one model x 50,000 (train/test 10,000):
                     the memory case.

Each runs once, in the memory subprocess (`config.memory_only_cases`): the
whole job's time (its start-up in gendiag excluded: the data files are
written before the clock starts), its peak RSS, and each family's seconds
from metrics.json (`details`). Families run at the config's defaults
(configs/diagnose.py), caps and all.
"""

import os
import shutil
import tempfile

import numpy as np

from benchmarks import common
from gendiag import compilation_cache
from gendiag import experiments
from gendiag.experiments import diagnose

NUM_MODES = 10
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def mixture_features(rng, means, modes, n: int):
  """(n, d) float32 ReLU features of the mixture and their (n,) modes.

  Row i is max(mu_c + 0.5 z, 0) with c drawn uniformly from `modes`;
  written in row chunks so the data costs one n x d array.
  """
  labels = rng.choice(np.asarray(modes), size=n).astype(np.int32)
  out = np.empty((n, means.shape[1]), np.float32)
  for start in range(0, n, 4096):
    stop = min(start + 4096, n)
    noise = rng.standard_normal((stop - start, means.shape[1]),
                                dtype=np.float32)
    out[start:stop] = np.maximum(means[labels[start:stop]] + 0.5 * noise, 0.0)
  return out, labels


def _write_sets(directory, sizes, models):
  """Writes real/train/test and each model's features + labels as .npy."""
  rng = np.random.default_rng(0)
  d = int(sizes["d"])
  means = rng.standard_normal((NUM_MODES, d), dtype=np.float32)
  everything = tuple(range(NUM_MODES))
  paths = {}
  sets = {"real": (int(sizes["n"]), everything),
          "train": (int(sizes["train"]), everything),
          "test": (int(sizes["test"]), everything)}
  sets.update({name: (int(sizes["m"]), modes) for name, modes in models.items()})
  for name, (n, modes) in sets.items():
    x, labels = mixture_features(rng, means, modes, n)
    paths[name] = os.path.join(directory, f"{name}.npy")
    np.save(paths[name], x)
    np.save(os.path.join(directory, f"{name}_labels.npy"), labels)
    del x
  return paths


def _job(sizes, models, cache_dir, fresh_cache):
  directory = tempfile.mkdtemp(prefix="gendiag_main_job_")
  paths = _write_sets(directory, sizes, models)
  config_lib = experiments.load_config_module(
      os.path.join(ROOT, "configs", "diagnose.py"))
  config = config_lib.get_config()
  config.real = paths["real"]
  config.real_labels = os.path.join(directory, "real_labels.npy")
  config.train = paths["train"]
  config.test = paths["test"]
  config.generated = ",".join(f"{name}={paths[name]}" for name in models)
  config.generated_labels = ",".join(
      f"{name}={os.path.join(directory, name + '_labels.npy')}"
      for name in models)
  if fresh_cache:
    shutil.rmtree(cache_dir, ignore_errors=True)
  compilation_cache.enable_compilation_cache(cache_dir)
  config.result_cache = os.path.join(cache_dir, "results")
  workdir = os.path.join(directory, "report")

  def run():
    return diagnose.run(config, workdir)

  def details(out):  # after the one timed call: the data files go too
    shutil.rmtree(directory, ignore_errors=True)
    return {"family_seconds": out["meta"]["family_seconds"],
            "family_peak_rss_gib": out["meta"].get("family_peak_rss_gib"),
            "job_seconds": out["meta"]["seconds"],
            "verdicts": out.get("verdicts")}

  return common.Bench(run=run, details=details, repeats=0, notes=(
      f"main job, every family, {len(models)} model(s); compilation and "
      f"result caches {'empty' if fresh_cache else 'warm'} at the start"))


def _cache_dir(sizes):
  return os.path.join(tempfile.gettempdir(),
                      f"gendiag_bench_cache_{sizes['n']}_{sizes['d']}")


@common.case("main_job_10k")
def main_job_10k_case(sizes):
  return _job(sizes, {"good": tuple(range(NUM_MODES)),
                      "dropped": tuple(range(2, NUM_MODES))},
              _cache_dir(sizes), fresh_cache=True)


@common.case("main_job_10k_cached")
def main_job_10k_cached_case(sizes):
  return _job(sizes, {"good": tuple(range(NUM_MODES)),
                      "dropped": tuple(range(2, NUM_MODES))},
              _cache_dir(sizes), fresh_cache=False)


@common.case("main_job_50k")
def main_job_50k_case(sizes):
  return _job(sizes, {"dropped": tuple(range(2, NUM_MODES))},
              _cache_dir(sizes), fresh_cache=True)
