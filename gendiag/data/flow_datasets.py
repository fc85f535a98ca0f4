"""The datasets the flows are trained on: one registry, two ways to split.

  ring    8 Gaussians on a circle (2-D, `gendiag.data.synthetic.ring`)
  grid    25 Gaussians on a 5 x 5 grid (2-D, `gendiag.data.synthetic.grid`)
  digits  scikit-learn's 1,797 digits embedded by a feature extractor (the
          shipped CNN by default, 64-d; `gendiag.features`)

`load_labelled` (experiments/train_flow.py) keeps the labels, for
class-conditional flows: ring/grid are one draw cut into train and test,
digits the feature network's own fixed split. `load_split`
(experiments/pr_tradeoff.py) returns unlabelled rows: ring/grid two
independent draws, digits a stratified held-out share projected by PCA.
"""

import dataclasses
from typing import Tuple

import jax
import numpy as np

from gendiag import features as features_lib
from gendiag.data import digits as digits_lib
from gendiag.data import synthetic
from gendiag.ops import quantize

MIXTURES = {"ring": synthetic.ring, "grid": synthetic.grid}
NUM_CLASSES = {"ring": 8, "grid": 25, "digits": digits_lib.NUM_CLASSES}
DATASETS = tuple(MIXTURES) + ("digits",)


def check_name(name: str) -> str:
  """`name` if it is one of DATASETS; ValueError otherwise."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}.")
  return name


@dataclasses.dataclass(frozen=True)
class Data:
  """Training and held-out real features (with labels, 0..num_classes-1)."""
  name: str
  train: np.ndarray
  train_labels: np.ndarray
  test: np.ndarray
  test_labels: np.ndarray
  num_classes: int


def load_labelled(name: str, *, key: jax.Array, num_train: int = 4000,
                  num_test: int = 1000, std: float = 0.05,
                  extractor: str = "digits_net") -> Data:
  """A labelled dataset (see `configs/train_flow.py`).

  ring/grid draw num_train + num_test points (mixture std `std`) with `key`
  and cut them in that order; digits uses the feature network's fixed split
  (train: the 1,258 digits it was trained on; test: the 539 it never saw),
  embedded by `extractor`.
  """
  check_name(name)
  if name in MIXTURES:
    x, labels = MIXTURES[name](key, int(num_train) + int(num_test),
                               std=float(std))
    x, labels = np.asarray(x, np.float32), np.asarray(labels, np.int32)
    cut = int(num_train)
    return Data(name, x[:cut], labels[:cut], x[cut:], labels[cut:],
                NUM_CLASSES[name])
  data = digits_lib.load()
  train_idx, test_idx = digits_lib.train_test()
  embed = lambda idx, what: features_lib.embed(extractor, data.images[idx],
                                               name=what)
  return Data(name, embed(train_idx, "training digits"),
              np.asarray(data.labels[train_idx]),
              embed(test_idx, "held-out digits"),
              np.asarray(data.labels[test_idx]), NUM_CLASSES[name])


def load_split(name: str, *, key: jax.Array, num_train: int = 4000,
               num_test: int = 2000, pca_dim: int = 8,
               extractor: str = "digits_net", test_fraction: float = 0.4
               ) -> Tuple[np.ndarray, np.ndarray, dict]:
  """(train, test, info) rows of a sweep dataset, float32 numpy.

  'ring' and 'grid' are fresh draws (`num_train`, `num_test`) of
  `gendiag.data.synthetic`'s mixtures. 'digits' are scikit-learn's 1,797
  digits embedded by `extractor` (the shipped CNN, as the main job does),
  split `test_fraction` held out (stratified by class and by the feature
  network's own train/test membership, `digits.split_like_feature_net`),
  then projected on the first `pca_dim` principal components of the train
  rows (`ops.quantize.pca_fit`); `num_train`/`num_test` are ignored.

  Args:
    name: one of DATASETS.
    key: PRNG key of the draws or the split.
    num_train, num_test: rows of the synthetic sets.
    pca_dim: digits' PCA dimension (0 keeps the full features).
    extractor: digits' feature extractor (a `gendiag.features` name).
    test_fraction: digits' held-out share.

  Returns:
    (train, test, info) with info = {'dim', 'num_train', 'num_test'} (and
    'explained_variance' for digits with PCA).
  """
  check_name(name)
  info = {}
  if name in MIXTURES:
    key_train, key_test = jax.random.split(key)
    train = np.asarray(MIXTURES[name](key_train, num_train)[0], np.float32)
    test = np.asarray(MIXTURES[name](key_test, num_test)[0], np.float32)
  else:
    if not 0 < test_fraction < 1:
      raise ValueError(f"`test_fraction` must be in (0, 1); got "
                       f"{test_fraction}.")
    parts = digits_lib.split_like_feature_net(
        {"train": 1 - test_fraction, "test": test_fraction}, key=key)
    feats = features_lib.embed(extractor, np.asarray(digits_lib.load().images),
                               name="digits")
    train, test = feats[parts["train"]], feats[parts["test"]]
    if pca_dim:
      pca = quantize.pca_fit(train, num_components=pca_dim)
      train = np.asarray(quantize.pca_transform(pca, train), np.float32)
      test = np.asarray(quantize.pca_transform(pca, test), np.float32)
      info["explained_variance"] = float(
          np.sum(np.asarray(pca.explained_variance_ratio)))
  info.update(dim=int(train.shape[1]), num_train=int(train.shape[0]),
              num_test=int(test.shape[0]))
  return train, test, info
