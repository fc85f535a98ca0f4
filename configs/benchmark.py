"""Config of experiments/benchmark.py: which cases, at which sizes.

Full run (the README's performance table; several minutes on 2 cores):
  python experiments/benchmark.py --workdir=/tmp/bench
Smoke (seconds): --config=configs/benchmark.py:smoke
One case: --config.cases=mmd
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.cases = "all"
  # comma-separated cases run on one thread (mauve-text's timings in the
  # notes are single-threaded)
  config.single_thread_cases = "mauve_5k,mauve_5k_cube_root"
  # Cases run once in the memory subprocess only (time of that one call,
  # compile included, and its peak RSS): 50k x 50k x 2048 MMD is ~30 TFLOP.
  config.memory_only_cases = ("mmd_50k,main_job_10k,main_job_10k_cached,"
                              "main_job_50k")
  big = dict(n=10_000, m=10_000, d=2048)
  config.sizes = ml_collections.ConfigDict({
      "sq_distances": dict(big, block_size=1024),
      "mmd": dict(big, block_size=1024),
      "mmd_50k": dict(n=50_000, m=50_000, d=2048, block_size=1024),
      "kid": dict(big, num_subsets=100, subset_size=1000),
      "fid": dict(big),
      "knn_radii": dict(n=10_000, d=2048, k=5),
      "prdc_two_k": dict(big),
      "prdc_one_k": dict(big),
      "fld": dict(big),
      "fld_shared_baseline": dict(big),
      **{f"gel_{s}_{o}": dict(n=2000, m=2000, d=32, num_witnesses=256)
         for s in ("one", "two") for o in ("et", "el")},
      "gel_test_10k": dict(big, num_witnesses=1024, num_permutations=200),
      # Flow trainer: `steps` jitted steps at configs/train_flow.py's batch.
      **{f"flow_{c}_steps": dict(steps=100, batch_size=256)
         for c in ("ring", "ring_pr", "digits")},
      "mauve_5k": dict(n=5000, m=5000, d=1024),
      "mauve_5k_cube_root": dict(n=5000, m=5000, d=1024),
      # The main job (every family; README's own-features command); the
      # cached case must run after main_job_10k (it reuses its cache).
      "main_job_10k": dict(big, train=10_000, test=10_000),
      "main_job_10k_cached": dict(big, train=10_000, test=10_000),
      "main_job_50k": dict(n=50_000, m=50_000, d=2048, train=10_000,
                           test=10_000),
      # The flax FID Inception against torch's TorchScript; weights: a file
      # (empty: $GENDIAG_FID_WHEEL or .ci/cache/; skipped without one).
      "inception_fid": dict(n=64, batch_size=32, weights=""),
      # The flax DINOv2 ViT-S/14 against transformers' torch Dinov2Model.
      "vit_dinov2_s14": dict(n=32, batch_size=16),
  })
  if arg == "smoke":
    for name in config.sizes:
      for key in ("n", "m", "train", "test"):
        if key in config.sizes[name]:
          config.sizes[name][key] = 600
      config.sizes[name].d = 64
    config.sizes.inception_fid.update(n=4, batch_size=2)
    config.sizes.vit_dinov2_s14.update(n=8, batch_size=4)
    config.sizes.kid.subset_size = 100
    config.sizes.kid.num_subsets = 5
    for name in config.sizes:
      if name.startswith("gel_"):
        config.sizes[name].num_witnesses = 32
    config.sizes.gel_test_10k.num_permutations = 20
    for c in ("ring", "ring_pr", "digits"):
      config.sizes[f"flow_{c}_steps"].update(steps=5, batch_size=32)
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use '' or 'smoke'.")
  return config
