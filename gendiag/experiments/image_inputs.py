"""The main job on images: every input set embedded by one extractor.

With `config.extractor` set ("inception_fid", "dinov2", "clip" or a
released model such as "dinov2_vitl14" / "clip_vit_l14_336"),
`config.real`, `config.generated`, `config.train` and `config.test` name
images (folders, ADM `.npz` batches, `.npy`) instead of features.
`embed_sets` embeds each set (`gendiag.features.extract.embed_images`,
cached on disk); every family then runs on the extractor's main feature
(Inception pool3, DINOv2's CLS, CLIP's image embedding), so the fid family
is FD_DINOv2 in DINOv2 space. `add_image_outputs` gives the report what
only images have: the spatial features (sFID) and the unbiased logits
(Inception Score, where the weights have the classifier) of Inception, and
for every extractor the name of the feature space, with the weights'
sha256 and the preprocessing.
"""

import dataclasses
from typing import Dict, Optional

import numpy as np

from gendiag import io
from gendiag.data.inputs import EvalInputs
from gendiag.features import images
from gendiag.experiments import extract_features


@dataclasses.dataclass
class EmbeddedSets:
  """Each set's extractor outputs ({"pool3", "spatial", ...} arrays)."""
  sets: Dict[str, Dict[str, np.ndarray]]
  models: Dict[str, str]   # model name -> its key in `sets`
  metadata: dict
  sources: Dict[str, object] = dataclasses.field(default_factory=dict)

  def main(self, name: str) -> np.ndarray:
    """The set's main feature (pool3, DINOv2's CLS, CLIP's embedding)."""
    return self.sets[name][self.metadata["feature"]]


def embed_sets(config) -> EmbeddedSets:
  """Embeds real, every model, and train/test where given."""
  extract_features.check_extractor(config)
  paths = {"real": config.real}
  models = {}
  for name, path in io.parse_named_paths(config.generated).items():
    models[name] = f"model {name}"
    paths[models[name]] = path
  for field in ("train", "test"):
    if config.get(field, ""):
      paths[field] = config[field]
  sets, metadata, sources = {}, {}, {}
  for name, path in paths.items():
    sources[name] = images.open_images(
        path, value_range=extract_features.value_range(config.value_range),
        name=name)
    embedding = extract_features.embed(config, sources[name], name)
    sets[name] = embedding.features
    metadata = embedding.metadata
  return EmbeddedSets(sets, models, metadata, sources)


def feature_space(metadata: dict) -> str:
  """How the report names the space: extractor, weights, preprocessing."""
  space = metadata["space"]
  return (f"{space[:-1]}; weights sha256 {metadata['weights_sha256'][:12]}, "
          f"{metadata['preprocessing']} preprocessing)")


def add_image_outputs(inputs: EvalInputs, embedded: EmbeddedSets) -> None:
  """Adds spatial features, unbiased logits, the feature space and the
  sets' images for the report's grids (read row by row on demand)."""
  real = embedded.sets["real"]
  generated = {m: embedded.sets[k] for m, k in embedded.models.items()}
  inputs.feature_space = feature_space(embedded.metadata)
  inputs.feature_family = embedded.metadata["family"]
  # The report's grids read the few rows they show, never whole sets.
  rows = {m: embedded.sources[k] for m, k in embedded.models.items()
          if k in embedded.sources}
  rows.update({k: embedded.sources[k] for k in ("real", "train")
               if k in embedded.sources})
  inputs.image_rows = {k: images.ImageRows(v) for k, v in rows.items()}
  if "spatial" in real:
    inputs.real_spatial = real["spatial"]
    inputs.generated_spatial = {m: v["spatial"] for m, v in generated.items()}
  if "logits_unbiased" in real:
    inputs.real_logits = real["logits_unbiased"]
    inputs.generated_logits = {m: v["logits_unbiased"]
                               for m, v in generated.items()}


def reference(config) -> Optional[object]:
  """`config.reference`'s statistics (an ADM VIRTUAL_*.npz or a saved
  `FrechetStats` .npz), or None."""
  path = config.get("reference", "")
  return io.load_reference(path) if path else None
