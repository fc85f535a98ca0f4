"""Images -> FID-Inception, DINOv2 or CLIP features, batched, data-parallel
and cached.

`embed_images(source, weights=FILE, extractor=NAME)` opens the images
(`gendiag.features.images.open_images`: a folder, an ADM `.npz`, an `.npy`
or an array), streams them in fixed batches (the last one padded and masked,
never dropped), applies one peer's front-end and runs the extractor:
  inception_fid  the flax FID Inception (`gendiag.features.inception`),
                 after one FID tool's resize and scaling
                 (`gendiag.features.resize.PREPROCESSING`, "adm" default);
  dinov2, clip   a ViT tower (`gendiag.features.vit`) of any size, built
                 from the checkpoint (`vit_weights.load_vit`: a Hugging
                 Face folder, a hub .pth, an OpenAI .pt), after one ViT
                 peer's resize/crop/mean-std
                 (`gendiag.features.vit_preprocess.VIT_PREPROCESSING`;
                 default dgm_eval_dinov2, cmmd for CLIP ViT-L/14@336px,
                 else openai_clip);
  dinov2_vitl14, clip_vit_l14_336, ... (`vit.PRESETS`)  the same, and the
                 checkpoint must be that released model.
It returns every output row in the source's order. Embeddings are cached on disk
(`gendiag.features.embedding_cache`) under the images' fingerprint, the
extractor, the weights' sha256 and the preprocessing, so a second run
re-embeds nothing (and does not even read the weights).

With a `jax.sharding.Mesh`, each batch is split over the mesh's first axis
(data parallelism; the parameters are replicated); the batch size is
rounded up to a multiple of that axis.
"""

import dataclasses
import functools
import math
import os
from typing import Any, Dict, Optional, Union

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

from gendiag.features import embedding_cache
from gendiag.features import images as images_lib
from gendiag.features import inception
from gendiag.features import inception_weights
from gendiag.features import resize
from gendiag.features import torch_files
from gendiag.features import vit
from gendiag.features import vit_preprocess
from gendiag.features import vit_weights

EXTRACTOR = "inception_fid"
VIT_EXTRACTORS = ("dinov2", "clip") + tuple(vit.PRESETS)
EXTRACTORS = (EXTRACTOR,) + VIT_EXTRACTORS
DEFAULT_BATCH_SIZE = 50
# Released towers as the literature writes them.
_PRETTY = {"s": "S", "b": "B", "l": "L", "g": "g"}


@dataclasses.dataclass(frozen=True)
class Embedding:
  """Features of a set of images and how they were made.

  Attributes:
    features: name -> (n, d) float32. Inception: "pool3" (2048), "spatial"
      (2023, sFID) and, where the weights have the classifier, "logits"
      and "logits_unbiased" (1008). ViTs: "pooled" (the final-normed CLS:
      DINOv2's feature) and, for CLIP, "projected" (the image embedding,
      not normalised).
    metadata: extractor, family ("inception", "dinov2" or "clip"), feature
      (the main one: "pool3", "pooled" or "projected"), space (the feature
      space in words), weights_sha256, weights_source, preprocessing, n,
      images (a description of the source), cached (whether this call read
      the cache instead of embedding).
  """
  features: Dict[str, np.ndarray]
  metadata: Dict[str, Any]


# Compiled apart from the network, so each image size and preprocessing
# compiles only its resize, and the network compiles once per batch shape.
_preprocess = jax.jit(resize.preprocess, static_argnames=("preprocessing",))
_vit_preprocess = jax.jit(vit_preprocess.preprocess_vit,
                          static_argnames=("preprocessing", "size"))


def _file_identity(path) -> tuple:
  """(path, size, mtime): a rewritten file is a new identity."""
  path = os.path.abspath(os.fspath(path))
  if not os.path.isfile(path):
    return (path, -1, -1)  # load_inception raises the clear error
  stat = os.stat(path)
  return (path, stat.st_size, stat.st_mtime_ns)


# Memoised by the file's identity, so the main job embedding real, every
# model, train and test reads and hashes the weight file once, not per set.
@functools.lru_cache(maxsize=4)
def _file_digest(identity: tuple) -> str:
  if identity[1] < 0:
    return inception_weights.load_inception(identity[0]).sha256
  return torch_files.file_sha256(identity[0])


@functools.lru_cache(maxsize=1)
def _file_weights(identity: tuple) -> inception_weights.InceptionWeights:
  return inception_weights.load_inception(identity[0])


def _weights_digest(weights) -> str:
  if isinstance(weights, inception_weights.InceptionWeights):
    return weights.sha256
  return _file_digest(_file_identity(weights))


def _load_weights(weights) -> inception_weights.InceptionWeights:
  if isinstance(weights, inception_weights.InceptionWeights):
    return weights
  return _file_weights(_file_identity(weights))


def _folder_identity(path) -> tuple:
  """(path, (name, size, mtime) of each file): a changed file is a new one."""
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    return _file_identity(path)
  return (path, tuple(sorted(
      (e.name, e.stat().st_size, e.stat().st_mtime_ns)
      for e in os.scandir(path) if e.is_file())))


@functools.lru_cache(maxsize=1)
def _vit_file_weights(identity: tuple) -> vit_weights.ViTWeights:
  return vit_weights.load_vit(identity[0])


def load_tower(extractor: str, weights) -> vit_weights.ViTWeights:
  """The ViT of `weights` (a path, read once per run, or `ViTWeights`),
  checked against `extractor` (a family, or a preset it must be)."""
  if extractor not in VIT_EXTRACTORS:
    raise ValueError(f"unknown extractor {extractor!r}; choose one of "
                     f"{list(EXTRACTORS)}.")
  loaded = weights if isinstance(weights, vit_weights.ViTWeights) else (
      _vit_file_weights(_folder_identity(weights)))
  family = extractor if extractor in vit.FAMILIES else (
      vit.PRESETS[extractor].family)
  preset = vit.preset_name(loaded.config)
  if loaded.config.family != family or (
      extractor in vit.PRESETS and preset != extractor):
    raise ValueError(
        f"extractor={extractor!r}, but the weights are {loaded.description}"
        f"; pass extractor={preset or loaded.config.family!r} (the family "
        "name takes any size).")
  return loaded


def model_name(config: vit.ViTConfig) -> str:
  """'ViT-L/14', 'ViT-L/14 (4 registers)', 'ViT-L/14@336px', or the shape."""
  preset = vit.preset_name(config)
  if not preset:
    return (f"ViT (patch {config.patch_size}, width {config.hidden}, depth "
            f"{config.depth}{f', {config.registers} registers' if config.registers else ''})")
  size = preset.split("vit")[-1]
  name = f"ViT-{_PRETTY[size[0]]}/{size[1:].split('_')[0]}"
  if preset.endswith("_reg"):
    name += f" ({config.registers} registers)"
  return name + ("@336px" if preset.endswith("_336") else "")


def default_preprocessing(extractor: str, config: Optional[vit.ViTConfig] = None) -> str:
  """The front-end of the extractor's reference numbers: "adm" (Inception),
  "dgm_eval_dinov2" (DINOv2), "cmmd" (CLIP ViT-L/14@336px) or
  "openai_clip" (other CLIP)."""
  if extractor == EXTRACTOR:
    return "adm"
  family = extractor if extractor in vit.FAMILIES else (
      vit.PRESETS[extractor].family)
  if family == "dinov2":
    return "dgm_eval_dinov2"
  preset = vit.preset_name(config) if config is not None else extractor
  return "cmmd" if preset == "clip_vit_l14_336" else "openai_clip"


def _vit_space(config: vit.ViTConfig, feature: str) -> str:
  if config.family == "dinov2":
    return (f"DINOv2 {model_name(config)} CLS after the final LayerNorm "
            f"({config.hidden}-d)")
  if feature == "projected":
    return (f"CLIP {model_name(config)} image embedding "
            f"({config.projection_dim}-d, projected, not normalised)")
  return f"CLIP {model_name(config)} ln_post(CLS) ({config.hidden}-d)"


def _mesh_size(mesh) -> int:
  return 1 if mesh is None else mesh.shape[mesh.axis_names[0]]


def _sharded(params, mesh):
  if mesh is None:
    return params, None
  params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
  return params, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def _run(source, batch_size, progress, mesh, params, network):
  """Every row's outputs of `network(params, pixels)`, in the source's order."""
  params, sharding = _sharded(params, mesh)
  features: Dict[str, np.ndarray] = {}
  for batch in images_lib.batches(source, batch_size=batch_size,
                                  progress=progress):
    pixels = batch.pixels if sharding is None else jax.device_put(
        batch.pixels, sharding)
    out = network(params, pixels)
    rows = batch.rows[batch.mask]
    for k, v in out.items():
      if k not in features:
        features[k] = np.zeros((len(source), v.shape[-1]), np.float32)
      features[k][rows] = np.asarray(v)[batch.mask]
  return features


def _inception_plan(weights, preprocessing):
  spec = resize.get_preprocessing(preprocessing or "adm")
  plan = {"family": "inception", "feature": "pool3",
          "space": "FID Inception pool3 (2048-d)", "preprocessing": spec.name,
          "extra": {"size": resize.INCEPTION_SIZE},
          "sha256": _weights_digest(weights),
          "source": os.fspath(getattr(weights, "source", weights))}

  def network():
    loaded = _load_weights(weights)
    return loaded.params, loaded.source, lambda params, pixels: (
        inception.forward(params, _preprocess(pixels, preprocessing=spec)))
  return plan, network


def _vit_plan(extractor, weights, preprocessing):
  loaded = load_tower(extractor, weights)
  config = loaded.config
  spec = vit_preprocess.get_vit_preprocessing(
      preprocessing or default_preprocessing(extractor, config),
      config.family)
  size = vit_preprocess.output_size(spec, config.image_size)
  feature = vit.feature_name(config)
  plan = {"family": config.family, "feature": feature,
          "space": _vit_space(config, feature), "preprocessing": spec.name,
          "extra": {"size": size, "config": dataclasses.asdict(config)},
          "sha256": loaded.sha256, "source": loaded.description}

  def network():
    return loaded.params, loaded.description, lambda params, pixels: vit.forward(
        params, config, _vit_preprocess(pixels, preprocessing=spec,
                                        size=size))
  return plan, network


def embed_images(source, *, weights: Union[str, os.PathLike,
                                           "inception_weights.InceptionWeights",
                                           "vit_weights.ViTWeights"],
                 extractor: str = EXTRACTOR,
                 preprocessing: Union[None, str, resize.Preprocessing,
                                      vit_preprocess.ViTPreprocessing] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 cache_dir: Optional[str] = None,
                 mesh: Optional[jax.sharding.Mesh] = None,
                 value_range=None, name: Optional[str] = None,
                 progress: bool = True) -> Embedding:
  """Features of every image of `source`, in its order, by `extractor`.

  Args:
    source: an `images.ImageSource`, or what `images.open_images` takes (a
      folder, `file.npz` / `file.npz:key`, `file.npy`, an array).
    weights: a weight file or folder the user has, or loaded weights
      (`InceptionWeights` for "inception_fid", `ViTWeights` for the ViTs).
    extractor: "inception_fid" (default), "dinov2" or "clip" (any size,
      from the checkpoint), or a released model of `vit.PRESETS`
      ("dinov2_vitl14", "clip_vit_l14_336", ...; the weights must be it).
    preprocessing: a name in `resize.PREPROCESSING` (Inception) or
      `vit_preprocess.VIT_PREPROCESSING` (ViTs); None: the extractor's
      default (`default_preprocessing`).
    batch_size: images per forward pass (results do not depend on it
      beyond float32 round-off).
    cache_dir: where embeddings are cached; None: the default
      (`embedding_cache.default_cache_dir()`); "off" or "": no cache.
    mesh: optional mesh; batches are split over its first axis.
    value_range: for float images, their range ((0, 1), (-1, 1) or
      (0, 255)); see `images.open_images`.
    name: how progress bars and errors name the images.
    progress: show a progress bar.

  Returns:
    An `Embedding`.
  """
  if extractor not in EXTRACTORS:
    raise ValueError(f"unknown extractor {extractor!r}; choose one of "
                     f"{list(EXTRACTORS)}.")
  if not isinstance(source, images_lib.ImageSource):
    source = images_lib.open_images(source, value_range=value_range,
                                    name=name)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or (
      batch_size < 1):
    raise ValueError(f"`batch_size` must be a positive integer; got "
                     f"{batch_size!r}.")
  devices = _mesh_size(mesh)
  batch_size = math.ceil(batch_size / devices) * devices
  plan, network = (_inception_plan(weights, preprocessing)
                   if extractor == EXTRACTOR else
                   _vit_plan(extractor, weights, preprocessing))
  key = embedding_cache.cache_key(
      source.fingerprint(), extractor=extractor, weights_sha256=plan["sha256"],
      preprocessing=plan["preprocessing"], extra=plan["extra"])
  metadata = {"extractor": extractor, "family": plan["family"],
              "feature": plan["feature"], "space": plan["space"],
              "weights_sha256": plan["sha256"],
              "preprocessing": plan["preprocessing"], "n": len(source),
              "images": source.description}
  cached = embedding_cache.load(cache_dir, key)
  if cached is not None:
    return Embedding(cached, {**metadata, "cached": True,
                              "weights_source": plan["source"]})
  params, weights_source, forward = network()
  features = _run(source, batch_size, progress, mesh, params, forward)
  metadata.update(cached=False, weights_source=weights_source)
  embedding_cache.save(cache_dir, key, features, metadata)
  return Embedding(features, metadata)
