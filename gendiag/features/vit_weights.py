"""DINOv2 and CLIP ViT weights from files the user has, never downloaded.

`load_vit(path)` reads any of:
  * a Hugging Face folder (`config.json` + `model.safetensors`, or shards
    listed in `model.safetensors.index.json`), read with `safetensors` into
    numpy (no torch): `facebook/dinov2-*`, `facebook/dinov2-with-registers-*`
    and `openai/clip-vit-*`, in the on-disk (legacy) names the hub files and
    `save_pretrained` write, or the names transformers 5 uses in memory
    (DINOv2 `attention.{q,k,v,o}_proj`, SwiGLU `gate_proj`/`up_proj`/
    `down_proj`; CLIP with or without the `vision_model.` prefix, with or
    without `visual_projection`; a full `CLIPModel`'s text tower is ignored);
  * a DINOv2 torch-hub `.pth` state_dict (`dinov2_vitl14_pretrain.pth`, ...,
    `..._reg4_pretrain.pth`; training checkpoints' `blocks.<chunk>.<i>` too);
  * an OpenAI CLIP `.pt` (`ViT-L-14-336px.pt`, ...: TorchScript, float16
    weights, cast to float32 exactly) or a `torch.save`d OpenAI-layout
    state_dict (`visual.*` keys, or the visual tower's own keys).
Torch files are read by `gendiag.features.torch_files` (an allow-listed
unpickler: no torch, no pickled code runs). The architecture comes from
the tensors' shapes (the folder's `config.json` must agree with them), so
any size loads; the head count, which shapes do not show, is
`config.json`'s, else hidden / 64 (every released DINOv2 and OpenAI CLIP
ViT), else the `heads` argument. The four OpenAI files are checked against
the sha256 in their download URLs.
"""

import dataclasses
import hashlib
import json
import math
import os
import re
from typing import Dict, NamedTuple, Optional

from flax import traverse_util
import numpy as np
import safetensors

from gendiag.features import torch_files
from gendiag.features import vit

WHERE = ("gendiag ships no weights. DINOv2: a Hugging Face folder such as "
         "facebook/dinov2-large (`huggingface-cli download facebook/dinov2-"
         "large --local-dir DIR`) or the hub file dinov2_vitl14_pretrain.pth "
         "(https://dl.fbaipublicfiles.com/dinov2/); CLIP: openai/clip-vit-"
         "large-patch14-336 (Hugging Face) or OpenAI's ViT-L-14-336px.pt "
         "(what `clip.load` caches in ~/.cache/clip).")
OPENAI_SHA256 = {
    "ViT-B-32.pt": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58"
                   "eba950af",
    "ViT-B-16.pt": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb619"
                   "88df416f",
    "ViT-L-14.pt": "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca17"
                   "37a03836",
    "ViT-L-14-336px.pt": "3035c92b350959924f9f00213499208652fc7ea050643e8b38"
                         "5c2dac08641f02",
}
Tensors = Dict[str, np.ndarray]


class ViTWeights(NamedTuple):
  """Parameters for `vit.forward`, the tower's config and their origin.

  Attributes:
    params: the flax parameter tree.
    config: the `vit.ViTConfig` the tensors describe.
    sha256: the file's sha256; for a folder, the sha256 of the lines
      "<name> <sha256 of the file>" of the files read, sorted by name.
    description: what was loaded, e.g. "DINOv2 dinov2_vitl14 from ...".
  """
  params: dict
  config: vit.ViTConfig
  sha256: str
  description: str


# Every format is first renamed to one canonical spelling (the hub's, with
# `blocks.<i>.` prefixes), in torch orientation.
_DINOV2_HF = (  # (pattern, replacement), applied in order
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^layernorm\.", "norm."),
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"\.attention\.attention\.(query|key|value)\.", r".attn.\1."),
    (r"\.attention\.(q|k|v)_proj\.", r".attn.\1."),
    (r"\.attention\.(output\.dense|o_proj)\.", ".attn.proj."),
    (r"\.layer_scale(\d)\.lambda1$", r".ls\1.gamma"),
    (r"\.mlp\.weights_in\.", ".mlp.w12."),
    (r"\.mlp\.(weights_out|down_proj)\.", ".mlp.w3."),
)
_CLIP_HF = (
    (r"^vision_model\.", ""),
    (r"^visual_projection\.weight$", "proj_t"),
    (r"^embeddings\.class_embedding$", "cls_token"),
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"^embeddings\.position_embedding\.weight$", "pos_embed"),
    (r"^pre_layrnorm\.", "ln_pre."),
    (r"^post_layernorm\.", "norm."),
    (r"^encoder\.layers\.(\d+)\.", r"blocks.\1."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.self_attn\.(q|k|v)_proj\.", r".attn.\1."),
    (r"\.self_attn\.out_proj\.", ".attn.proj."),
)
_OPENAI = (
    (r"^visual\.", ""),
    (r"^class_embedding$", "cls_token"),
    (r"^conv1\.", "patch_embed.proj."),
    (r"^positional_embedding$", "pos_embed"),
    (r"^ln_post\.", "norm."),
    (r"^transformer\.resblocks\.(\d+)\.", r"blocks.\1."),
    (r"\.ln_(\d)\.", r".norm\1."),
    (r"\.attn\.in_proj_(weight|bias)$", r".attn.qkv.\1"),
    (r"\.attn\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."),
    (r"\.mlp\.c_proj\.", ".mlp.fc2."),
)
_HUB = ((r"^blocks\.\d+\.(\d+)\.", r"blocks.\1."),)  # drop block chunks
_UNUSED = ("mask_token", "embeddings.position_ids")
_TOKENS = ("cls_token", "pos_embed", "register_tokens")  # stored (1, ..., D)


def _rename(tensors: Tensors, rules) -> Tensors:
  out = {}
  for key, value in tensors.items():
    for pattern, replacement in rules:
      key = re.sub(pattern, replacement, key)
    out[key] = value
  return out


def _fuse(tensors: Tensors) -> Tensors:
  """q, k, v -> qkv (rows [q; k; v]); gate, up -> w12; proj_t -> proj."""
  out = dict(tensors)
  for key in [k for k in tensors if ".attn.q." in k]:
    parts = [out.pop(key.replace(".attn.q.", f".attn.{s}."), None)
             for s in ("q", "k", "v")]
    if any(p is None for p in parts):
      raise ValueError(f"{key}: the file has q but not k and v.")
    out[key.replace(".attn.q.", ".attn.qkv.")] = np.concatenate(parts, 0)
  for key in [k for k in tensors if ".attn.query." in k]:
    parts = [out.pop(key.replace(".query.", f".{s}."), None)
             for s in ("query", "key", "value")]
    if any(p is None for p in parts):
      raise ValueError(f"{key}: the file has query but not key and value.")
    out[key.replace(".attn.query.", ".attn.qkv.")] = np.concatenate(parts, 0)
  for key in [k for k in tensors if ".mlp.gate_proj." in k]:
    up = out.pop(key.replace("gate_proj", "up_proj"), None)
    if up is None:
      raise ValueError(f"{key}: the file has gate_proj but not up_proj.")
    out[key.replace("gate_proj", "w12")] = np.concatenate([out.pop(key), up])
  if "proj_t" in out:
    out["proj"] = out.pop("proj_t").T
  return out


def _infer_config(t: Tensors, family: str, *, heads: Optional[int],
                  mlp: str, ln_eps: float, what: str) -> vit.ViTConfig:
  """The ViTConfig the canonical tensors' shapes describe."""
  for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
    if key not in t:
      raise ValueError(f"{what} has no {key!r} (in any spelling gendiag "
                       f"reads): not a {family} ViT checkpoint.")
  hidden = t["cls_token"].size
  positions = t["pos_embed"].reshape(-1, hidden).shape[0]
  grid = math.isqrt(positions - 1)
  if grid * grid != positions - 1:
    raise ValueError(f"{what}: {positions - 1} position rows are not a "
                     "square grid.")
  depth = len({int(m.group(1)) for k in t
               for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
  swiglu = "blocks.0.mlp.w12.weight" in t
  inner = t.get("blocks.0.mlp." + ("w12" if swiglu else "fc1") + ".weight")
  if depth == 0 or inner is None:
    raise ValueError(f"{what} has no transformer blocks (blocks.0...).")
  heads = heads or (hidden // 64 if hidden % 64 == 0 else 0)
  if not heads:
    raise ValueError(f"{what}: hidden width {hidden} is not a multiple of 64, "
                     "so the head count is unknown; pass heads=.")
  registers = t["register_tokens"].reshape(-1, hidden).shape[0] if (
      "register_tokens" in t) else 0
  interpolation = ("none" if family == "clip" else
                   "antialias_bicubic" if registers else "offset_bicubic")
  return vit.ViTConfig(
      family=family, patch_size=t["patch_embed.proj.weight"].shape[-1],
      hidden=hidden, depth=depth, heads=heads,
      mlp_hidden=inner.shape[0] // (2 if swiglu else 1),
      mlp="swiglu" if swiglu else mlp,
      layer_scale="blocks.0.ls1.gamma" in t, registers=registers,
      ln_eps=ln_eps, pre_norm="ln_pre.weight" in t,
      patch_bias="patch_embed.proj.bias" in t,
      projection_dim=t["proj"].shape[1] if "proj" in t else 0, grid=grid,
      interpolation=interpolation)


_FLAX = {  # flax block path -> canonical key under blocks.<i>.
    ("ln1", "scale"): "norm1.weight", ("ln1", "bias"): "norm1.bias",
    ("ln2", "scale"): "norm2.weight", ("ln2", "bias"): "norm2.bias",
    ("attn", "qkv", "kernel"): "attn.qkv.weight",
    ("attn", "qkv", "bias"): "attn.qkv.bias",
    ("attn", "out", "kernel"): "attn.proj.weight",
    ("attn", "out", "bias"): "attn.proj.bias",
    ("ls1",): "ls1.gamma", ("ls2",): "ls2.gamma",
    **{("mlp", m, leaf[0]): f"mlp.{m}.{leaf[1]}"
       for m in ("fc1", "fc2", "w12", "w3")
       for leaf in (("kernel", "weight"), ("bias", "bias"))},
}
_TOP = {("patch_embed", "kernel"): "patch_embed.proj.weight",
        ("patch_embed", "bias"): "patch_embed.proj.bias",
        ("cls_token",): "cls_token", ("pos_embed",): "pos_embed",
        ("registers",): "register_tokens", ("proj",): "proj",
        ("ln_pre", "scale"): "ln_pre.weight", ("ln_pre", "bias"): "ln_pre.bias",
        ("ln_final", "scale"): "norm.weight", ("ln_final", "bias"): "norm.bias"}


def _to_flax(key: str, value: np.ndarray) -> np.ndarray:
  """A canonical torch tensor -> its flax orientation."""
  if key == "patch_embed.proj.weight" and value.ndim == 4:  # OIHW
    value = np.transpose(value, (2, 3, 1, 0)).reshape(-1, value.shape[0])
  elif key.endswith(".weight") and value.ndim == 2:   # Linear (out, in)
    value = value.T
  elif key in _TOKENS:
    value = value.reshape((-1,) * (key != "cls_token") + value.shape[-1:])
  return np.asarray(value, np.float32)


def _to_params(t: Tensors, config: vit.ViTConfig, what: str) -> dict:
  """The flax tree: every parameter filled, right shapes, nothing left."""
  flat, used = {}, set(_UNUSED)
  for path, shape in vit.parameter_shapes(config).items():
    if path[0] == "blocks":
      keys = [f"blocks.{i}.{_FLAX[path[1:]]}" for i in range(config.depth)]
    else:
      keys = [_TOP[path]]
    leaves = []
    for key in keys:
      if key not in t:
        raise ValueError(f"{what} lacks {key!r} (canonical name): the file "
                         "is incomplete or not this tower.")
      leaf_shape = tuple(shape[1:] if path[0] == "blocks" else shape)
      leaf = _to_flax(key, t[key])
      if leaf.shape != leaf_shape:
        raise ValueError(f"{what}: {key!r} has shape {t[key].shape}, which "
                         f"does not fit the tower's {leaf_shape}.")
      leaves.append(leaf)
      used.add(key)
    flat[path] = np.stack(leaves) if path[0] == "blocks" else leaves[0]
  extra = sorted(set(t) - used)
  if extra:
    raise ValueError(f"{what} holds tensors this tower does not use "
                     f"({extra[:4]}): an unsupported variant.")
  return traverse_util.unflatten_dict(flat)


def _describe(config: vit.ViTConfig, source: str) -> str:
  name = vit.preset_name(config) or (
      f"{config.family} ViT (patch {config.patch_size}, width "
      f"{config.hidden}, depth {config.depth})")
  return f"{'DINOv2' if config.family == 'dinov2' else 'CLIP'} {name} from {source}"


def _read_safetensors(folder: str):
  """(tensors, files read) of a Hugging Face folder's safetensors."""
  index = os.path.join(folder, "model.safetensors.index.json")
  if os.path.isfile(index):
    with open(index, encoding="utf-8") as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    files = ["model.safetensors.index.json"] + shards
  else:
    shards = files = ["model.safetensors"]
  tensors = {}
  for shard in shards:
    path = os.path.join(folder, shard)
    if not os.path.isfile(path):
      raise ValueError(f"{folder} has no {shard} (only safetensors folders "
                       f"are read, no pytorch_model.bin). {WHERE}")
    try:
      with safetensors.safe_open(path, framework="np") as f:
        for key in f.keys():
          if not key.startswith(("text_model.", "text_projection", "logit_")):
            tensors[key] = f.get_tensor(key)
    except (TypeError, OSError, safetensors.SafetensorError) as e:
      raise ValueError(f"{path} could not be read as float tensors ({e}); "
                       "bfloat16 files must be converted to float32 first."
                       ) from None
  return tensors, files


def _folder_digest(folder: str, files) -> str:
  lines = sorted(f"{name} {torch_files.file_sha256(os.path.join(folder, name))}"
                 for name in files)
  return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _load_folder(folder: str, heads: Optional[int]):
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise ValueError(f"{folder} has no config.json: not a Hugging Face model "
                     f"folder. {WHERE}")
  with open(config_path, encoding="utf-8") as f:
    hf = json.load(f)
  kind = hf.get("model_type", "")
  tensors, files = _read_safetensors(folder)
  if kind.startswith("dinov2"):
    family, rules, eps, act = "dinov2", _DINOV2_HF, 1e-6, "gelu"
  elif kind in ("clip", "clip_vision_model"):
    hf = hf.get("vision_config", hf) if kind == "clip" else hf
    family, rules, eps, act = "clip", _CLIP_HF, 1e-5, "quick_gelu"
  else:
    raise ValueError(f"{config_path}: model_type {kind!r} is neither DINOv2 "
                     "('dinov2', 'dinov2_with_registers') nor CLIP ('clip', "
                     "'clip_vision_model').")
  act = hf.get("hidden_act", act)
  if act not in ("gelu", "quick_gelu"):
    raise ValueError(f"{config_path}: hidden_act {act!r} is not supported "
                     "(gelu or quick_gelu).")
  t = _fuse(_rename(tensors, rules))
  config = _infer_config(t, family, heads=heads or hf.get("num_attention_heads"),
                         mlp=act, ln_eps=float(hf.get("layer_norm_eps", eps)),
                         what=folder)
  for field, hf_field in (("hidden", "hidden_size"),
                          ("depth", "num_hidden_layers"),
                          ("patch_size", "patch_size")):
    if hf_field in hf and hf[hf_field] != getattr(config, field):
      raise ValueError(f"{config_path} says {hf_field} = {hf[hf_field]}, but "
                       f"the safetensors have {getattr(config, field)}: the "
                       "folder mixes two models.")
  return t, config, _folder_digest(folder, ["config.json"] + files)


def _load_torch_file(path: str, heads: Optional[int]):
  sha256 = torch_files.file_sha256(path)
  base = os.path.basename(path)
  if base in OPENAI_SHA256 and sha256 != OPENAI_SHA256[base]:
    raise ValueError(f"{path} has sha256 {sha256}, but OpenAI's {base} has "
                     f"{OPENAI_SHA256[base]}: the file is truncated or "
                     "corrupt; fetch it again.")
  named = torch_files.named_tensors(torch_files.read_torch_zip(path, what=path))
  if any(k.endswith("class_embedding") for k in named):
    # A whole CLIP (visual.* beside the text tower and scalars such as
    # input_resolution) or the visual tower's own state_dict.
    if any(k.startswith("visual.") for k in named):
      named = {k: v for k, v in named.items() if k.startswith("visual.")}
    family, t = "clip", _rename(named, _OPENAI)
    mlp, eps = "quick_gelu", 1e-5
  elif "cls_token" in named:
    family, t, mlp, eps = "dinov2", _rename(named, _HUB), "gelu", 1e-6
  else:
    raise ValueError(f"{path} holds neither OpenAI CLIP keys "
                     "(visual.class_embedding, ...) nor DINOv2 hub keys "
                     f"(cls_token, blocks.0...). {WHERE}")
  t = {k: np.asarray(v, np.float32) for k, v in t.items()}
  config = _infer_config(t, family, heads=heads, mlp=mlp, ln_eps=eps,
                         what=path)
  return t, config, sha256


def load_vit(path: str, *, heads: Optional[int] = None,
             interpolation: Optional[str] = None) -> ViTWeights:
  """Reads a DINOv2 or CLIP image tower from a file the user has.

  Args:
    path: a Hugging Face folder (or its model.safetensors), a DINOv2 hub
      `.pth` or an OpenAI CLIP `.pt` / OpenAI-layout state_dict.
    heads: the attention heads, for models whose width is not 64 per head
      (a folder's config.json gives them; released models need nothing).
    interpolation: override the position-grid rule (`vit.INTERPOLATIONS`);
      by default the hub model's, so features match dgm-eval and
      torch-fidelity ("size_bicubic" reproduces transformers' Dinov2Model).

  Returns:
    `ViTWeights(params, config, sha256, description)`.

  Raises:
    ValueError: missing file (the message says where such weights come
      from), wrong digest for an OpenAI file name, unreadable file, or
      tensors that do not form one tower.
  """
  path = os.fspath(path)
  if os.path.isfile(path) and path.endswith(".safetensors"):
    path = os.path.dirname(path) or "."
  if os.path.isdir(path):
    t, config, digest = _load_folder(path, heads)
  elif os.path.isfile(path):
    t, config, digest = _load_torch_file(path, heads)
  else:
    raise ValueError(f"no weights at {path!r}. {WHERE}")
  if interpolation is not None:
    config = dataclasses.replace(config, interpolation=interpolation)
  params = _to_params(t, config, path)
  return ViTWeights(params, config, digest, _describe(config, path))
