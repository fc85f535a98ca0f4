"""What the report's metric families see: `EvalInputs`, and the `NEEDS` names.

A family (`gendiag.report.registry.Family`) lists the optional fields it
needs among `NEEDS`; `EvalInputs.has` says whether the inputs hold them.
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np

NEEDS = ("real_labels", "generated_labels", "train", "test", "images")


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
    failures: model name -> the known failure of a simulated model.
    config: family hyperparameters (an ml_collections ConfigDict or dict).
  """
  real: np.ndarray
  generated: Dict[str, np.ndarray]
  real_labels: Optional[np.ndarray] = None
  generated_labels: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  train: Optional[np.ndarray] = None
  test: Optional[np.ndarray] = None
  images: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  failures: Dict[str, str] = dataclasses.field(default_factory=dict)
  config: Any = dataclasses.field(default_factory=dict)

  def has(self, need: str) -> bool:
    if need == "generated_labels":
      return bool(self.generated_labels)
    if need == "images":
      return bool(self.images)
    return getattr(self, need) is not None
