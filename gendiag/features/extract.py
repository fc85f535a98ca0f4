"""Images -> FID-Inception features, batched, data-parallel and cached.

`embed_images(source, weights=FILE)` opens the images
(`gendiag.features.images.open_images`: a folder, an ADM `.npz`, an `.npy`
or an array), streams them in fixed batches (the last one padded and masked,
never dropped), applies one peer's resize and scaling
(`gendiag.features.resize.PREPROCESSING`, "adm" by default), runs the flax
Inception (`gendiag.features.inception`) and returns every output row in
the source's order. Embeddings are cached on disk
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

EXTRACTOR = "inception_fid"
DEFAULT_BATCH_SIZE = 50


@dataclasses.dataclass(frozen=True)
class Embedding:
  """Features of a set of images and how they were made.

  Attributes:
    features: name -> (n, d) float32: "pool3" (2048), "spatial" (2023, sFID)
      and, where the weights have the classifier, "logits" and
      "logits_unbiased" (1008).
    metadata: extractor, weights_sha256, weights_source, preprocessing, n,
      images (a description of the source), cached (whether this call
      read the cache instead of embedding).
  """
  features: Dict[str, np.ndarray]
  metadata: Dict[str, Any]


# Compiled apart from the network, so each image size and preprocessing
# compiles only its resize, and the network compiles once per batch shape.
_preprocess = jax.jit(resize.preprocess, static_argnames=("preprocessing",))


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


def _mesh_size(mesh) -> int:
  return 1 if mesh is None else mesh.shape[mesh.axis_names[0]]


def embed_images(source, *, weights: Union[str, os.PathLike,
                                           "inception_weights.InceptionWeights"],
                 preprocessing: Union[str, resize.Preprocessing] = "adm",
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 cache_dir: Optional[str] = None,
                 mesh: Optional[jax.sharding.Mesh] = None,
                 value_range=None, name: Optional[str] = None,
                 progress: bool = True) -> Embedding:
  """FID-Inception features of every image of `source`, in its order.

  Args:
    source: an `images.ImageSource`, or what `images.open_images` takes (a
      folder, `file.npz` / `file.npz:key`, `file.npy`, an array).
    weights: a weight file (`inception_weights.load_inception`) or loaded
      `InceptionWeights`.
    preprocessing: a name in `resize.PREPROCESSING` ("adm": the TF graph's
      own resize and scaling, as the ADM evaluator and torch-fidelity).
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
  if not isinstance(source, images_lib.ImageSource):
    source = images_lib.open_images(source, value_range=value_range,
                                    name=name)
  spec = resize.get_preprocessing(preprocessing)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or (
      batch_size < 1):
    raise ValueError(f"`batch_size` must be a positive integer; got "
                     f"{batch_size!r}.")
  devices = _mesh_size(mesh)
  batch_size = math.ceil(batch_size / devices) * devices
  sha256 = _weights_digest(weights)
  key = embedding_cache.cache_key(
      source.fingerprint(), extractor=EXTRACTOR, weights_sha256=sha256,
      preprocessing=spec.name, extra={"size": resize.INCEPTION_SIZE})
  metadata = {"extractor": EXTRACTOR, "weights_sha256": sha256,
              "preprocessing": spec.name, "n": len(source),
              "images": source.description}
  cached = embedding_cache.load(cache_dir, key)
  if cached is not None:
    return Embedding(cached, {**metadata, "cached": True, "weights_source":
                              os.fspath(getattr(weights, "source", weights))})
  loaded = _load_weights(weights)
  params = loaded.params
  sharding = None
  if mesh is not None:
    params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
  features: Dict[str, np.ndarray] = {}
  for batch in images_lib.batches(source, batch_size=batch_size,
                                  progress=progress):
    pixels = batch.pixels if sharding is None else jax.device_put(
        batch.pixels, sharding)
    out = inception.forward(params, _preprocess(pixels, preprocessing=spec))
    rows = batch.rows[batch.mask]
    for k, v in out.items():
      if k not in features:
        features[k] = np.zeros((len(source), v.shape[-1]), np.float32)
      features[k][rows] = np.asarray(v)[batch.mask]
  metadata.update(cached=False, weights_source=loaded.source)
  embedding_cache.save(cache_dir, key, features, metadata)
  return Embedding(features, metadata)
