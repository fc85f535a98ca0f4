"""What the report's metric families see: `EvalInputs`, and the `NEEDS` names.

A family (`gendiag.report.registry.Family`) lists the optional fields it
needs among `NEEDS`; `EvalInputs.has` says whether the inputs hold them.
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np

from gendiag.metrics.frechet import FrechetStats

NEEDS = ("real_labels", "generated_labels", "train", "test", "images",
         "spatial", "logits", "reference", "clip_embeddings")


@dataclasses.dataclass(frozen=True)
class FrechetReference:
  """Precomputed Gaussian statistics that models are scored against.

  For example the ADM evaluator's `VIRTUAL_*.npz` batches
  (`gendiag.io.load_adm_reference`), whose statistics cover a whole
  training set, or a pytorch-fid `.npz` (`gendiag.io.load_frechet_stats`).

  Attributes:
    features: statistics in the space of `EvalInputs.real` / `.generated`
      (Inception pool3 for the ADM files).
    spatial: statistics in the space of `EvalInputs.generated_spatial`
      (ADM's `mu_s`, `sigma_s`), or None.
    source: where they come from (a file name), shown in the report.
  """
  features: FrechetStats
  spatial: Optional[FrechetStats] = None
  source: str = ""


@dataclasses.dataclass
class EvalInputs:
  """Everything a metric family may use. Arrays are (n, d) float32 features.

  Attributes:
    real: real (reference) features.
    generated: model name -> generated features.
    real_labels: (n,) class labels of `real`, if known.
    generated_labels: model name -> labels (a model may lack them).
    train: the generator's training features (memorisation metrics).
    test: held-out real features never seen by the generator (FLD).
    images: optional name -> image arrays ('real', 'train' or a model name)
      for families that need pixels (CAS, image grids).
    image_rows: name -> row-indexable images for the report's sample grids
      only (`rows[i]` is image i, read on demand: the image front-end's
      `features.images.ImageRows`); used where `images` lacks the set.
    failures: model name -> the known failure of a simulated model.
    config: family hyperparameters (an ml_collections ConfigDict or dict).
    feature_space: the space `real` and `generated` live in, stated in the
      report (e.g. "Inception pool3 (2048)").
    feature_family: the extractor family of that space when embedded from
      images: "inception", "dinov2" or "clip" ("" for given features);
      the fid family calls itself FD_DINOv2 in DINOv2 space, and cmmd
      runs only in CLIP space.
    real_spatial: (n, e) sFID features of the real rows (the Inception's
      Mixed_6d.branch1x1, 7 channels, (h, w, c) order: e = 2023), or None.
    generated_spatial: model name -> its sFID features (a model may lack
      them).
    real_logits: (n, C) unbiased classifier logits of the real rows (the
      Inception Score of real data, the models' reference), or None.
    generated_logits: model name -> (m, C) unbiased logits, pool3 @ W
      without the bias (Inception Score).
    reference: precomputed statistics to score the models against (FID and
      sFID against them), or None.
  """
  real: np.ndarray
  generated: Dict[str, np.ndarray]
  real_labels: Optional[np.ndarray] = None
  generated_labels: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  train: Optional[np.ndarray] = None
  test: Optional[np.ndarray] = None
  images: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  image_rows: Dict[str, Any] = dataclasses.field(default_factory=dict)
  failures: Dict[str, str] = dataclasses.field(default_factory=dict)
  config: Any = dataclasses.field(default_factory=dict)
  feature_space: str = ("the features passed in (their extractor is not "
                        "known to gendiag)")
  feature_family: str = ""
  real_spatial: Optional[np.ndarray] = None
  generated_spatial: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  real_logits: Optional[np.ndarray] = None
  generated_logits: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  reference: Optional[FrechetReference] = None

  def has(self, need: str) -> bool:
    """Whether the inputs hold `need` (one of `NEEDS`).

    "spatial" and "logits" mean some model has them (`generated_spatial`,
    `generated_logits`); the real side's are optional extras.
    "clip_embeddings" means the features are CLIP image embeddings
    (`feature_family` "clip").
    """
    if need == "generated_labels":
      return bool(self.generated_labels)
    if need == "images":
      return bool(self.images)
    if need == "spatial":
      return bool(self.generated_spatial)
    if need == "logits":
      return bool(self.generated_logits)
    if need == "clip_embeddings":
      return self.feature_family == "clip"
    return getattr(self, need) is not None
