"""The allow-listed torch-file reader and the Inception weight loader.

torch (the test extra's CPU build) writes the files; gendiag reads them
without it.
"""

import os
import pickle
import shutil
import zipfile

import jax
import numpy as np
import pytest

from gendiag.features import inception
from gendiag.features import inception_weights
from gendiag.features import torch_files

torch = pytest.importorskip("torch")


def test_reads_what_torch_save_wrote(tmp_path):
  base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
  state = {
      "transposed": base.t(),                        # non-contiguous strides
      "offset": base[1:, 1:],                        # storage offset
      "half": torch.tensor([0.5, -2.0], dtype=torch.float16),
      "long": torch.tensor([1, 2 ** 40]),
      "param": torch.nn.Parameter(torch.ones(2, 2)),
      "scalar": torch.tensor(3.5),
      "nested": {"x": torch.zeros(1, dtype=torch.bool)},
  }
  path = tmp_path / "state.pth"
  torch.save(state, path)
  tree = torch_files.read_torch_zip(path)
  flat = torch_files.named_tensors(tree)
  assert sorted(flat) == sorted(["transposed", "offset", "half", "long",
                                 "param", "scalar", "nested.x"])
  for name, value in flat.items():
    node = state
    for part in name.split("."):
      node = node[part]
    expected = node.detach().numpy()
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_array_equal(value, expected)


def test_refuses_code_in_the_pickle(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(Evil(), protocol=2))
  with pytest.raises(ValueError, match="refusing to load"):
    torch_files.read_torch_zip(path)


def test_legacy_and_truncated_files_are_clear_errors(tmp_path):
  legacy = tmp_path / "legacy.pth"
  torch.save({"w": torch.ones(3)}, legacy,
             _use_new_zipfile_serialization=False)
  with pytest.raises(ValueError, match="legacy"):
    torch_files.read_torch_zip(legacy)
  good = tmp_path / "good.pth"
  torch.save({"w": torch.ones(1000)}, good)
  data = good.read_bytes()
  cut = tmp_path / "cut.pth"
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError):
    torch_files.read_torch_zip(cut)


def _as_torchscript_names(params):
  """gendiag's tree -> {'layers.<scope>.<leaf>': OIHW tensor} (NVIDIA)."""
  out = {}
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, value in flat:
    keys = [k.key for k in path]
    value = np.asarray(value)
    if keys == ["output"]:
      out["output.weight"] = torch.from_numpy(value.T.copy())
    elif keys == ["output_bias"]:
      out["output.bias"] = torch.from_numpy(value.copy())
    else:
      if keys[-1] == "weight":
        value = value.transpose(3, 2, 0, 1)
      out["layers." + ".".join(keys)] = torch.from_numpy(value.copy())
  return out


# torchvision's spelling of a few scopes, written from torchvision's
# inception_v3 (independently of the loader's table).
TV_SPOT_CHECKS = {
    "Conv2d_1a_3x3.conv.weight": ("conv", "weight"),
    "Conv2d_4a_3x3.bn.running_var": ("conv_4", "var"),
    "Mixed_5b.branch5x5_2.bn.bias": ("mixed", "tower", "conv_1", "beta"),
    "Mixed_6a.branch3x3dbl_3.conv.weight": ("mixed_3", "tower", "conv_2",
                                            "weight"),
    "Mixed_6d.branch1x1.bn.running_mean": ("mixed_6", "conv", "mean"),
    "Mixed_6e.branch7x7dbl_5.conv.weight": ("mixed_7", "tower_1", "conv_4",
                                            "weight"),
    "Mixed_7a.branch7x7x3_4.bn.bias": ("mixed_8", "tower_1", "conv_3",
                                       "beta"),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": ("mixed_10",
                                             "tower_1_mixed_conv_1", "weight"),
    "Mixed_7b.branch_pool.bn.running_var": ("mixed_9", "tower_2_conv", "var"),
}


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return np.asarray(tree)


def test_torchscript_and_torchvision_layouts_load_the_same(tmp_path):
  params = inception.random_params(1, logits=True)
  ts = _as_torchscript_names(params)
  ts_path = tmp_path / "nvidia_like.pt"
  torch.save(ts, ts_path)
  with pytest.warns(UserWarning, match="not a known"):
    loaded = inception_weights.load_inception(str(ts_path))
  assert loaded.layout == "torchscript" and loaded.has_logits
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params,
                         jax.tree_util.tree_map(np.asarray, params))
  # The torchvision spelling of the same tensors (pytorch-fid's file),
  # with BN gammas of 1 and num_batches_tracked, which the graph ignores.
  inverse = {}
  for tv, scope in TV_SPOT_CHECKS.items():
    inverse[".".join(scope)] = tv
  tv_state = {}
  for name, tensor in ts.items():
    scope = name.removeprefix("layers.")
    tv_name = inverse.get(scope) or inception_weights.torchvision_name(scope)
    tv_state[tv_name] = tensor
    if tv_name.endswith("bn.bias"):
      tv_state[tv_name.replace("bn.bias", "bn.weight")] = torch.ones_like(
          tensor)
      tv_state[tv_name.replace("bn.bias", "bn.num_batches_tracked")] = (
          torch.tensor(0))
  tv_path = tmp_path / "pytorch_fid_like.pth"
  torch.save(tv_state, tv_path)
  with pytest.warns(UserWarning):
    from_tv = inception_weights.load_inception(str(tv_path))
  assert from_tv.layout == "torchvision"
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_tv.params,
                         loaded.params)
  for tv, scope in TV_SPOT_CHECKS.items():
    np.testing.assert_array_equal(
        tv_state[tv].numpy() if not tv.endswith("weight")
        else tv_state[tv].numpy().transpose(2, 3, 1, 0),
        _get(from_tv.params, scope))


def test_weight_files_are_checked(tmp_path):
  with pytest.raises(ValueError, match="ships no weights"):
    inception_weights.load_inception(str(tmp_path / "nowhere.pt"))
  fake = tmp_path / "default_1.pt"
  torch.save({"w": torch.ones(3)}, fake)
  with pytest.raises(ValueError, match="7ff4a85c3a63"):
    inception_weights.load_inception(str(fake))
  other = tmp_path / "other.pt"
  shutil.copy(fake, other)
  with pytest.warns(UserWarning), pytest.raises(ValueError,
                                                match="not a complete"):
    inception_weights.load_inception(str(other))
  params = inception.random_params(0, logits=False)
  state = _as_torchscript_names(params)
  state["layers.conv.weight"] = torch.zeros(32, 3, 5, 5)
  bad = tmp_path / "bad.pt"
  torch.save(state, bad)
  with pytest.warns(UserWarning), pytest.raises(ValueError, match="shape"):
    inception_weights.load_inception(str(bad))
