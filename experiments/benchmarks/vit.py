"""Benchmark case for the flax ViT towers (DINOv2, CLIP).

vit_dinov2_s14  images per second of `gendiag.features.vit.forward` for a
                DINOv2 ViT-S/14 (the `dinov2_vits14` preset, random weights:
                speed does not depend on their values) on n preprocessed
                224 x 224 images in batches of `batch_size`, against
                transformers' `Dinov2Model` of the same shape (random init)
                run by torch on the same batches and threads. FLOPs: the
                tower's matmuls, counted analytically (flops_per_image).

Without torch or transformers the case runs without the peer.
"""

import jax
import numpy as np

from benchmarks import common
from gendiag.features import vit

SIZE = 224


def flops_per_image(config, size: int = SIZE) -> float:
  """Multiply-adds x 2 of one image through the tower (matmuls only).

  Tokens t = 1 + registers + (size / P)^2, width D, MLP width F, per block:
  QKV and output projections 8 t D^2, attention scores and values 4 t^2 D,
  MLP 4 t D F (SwiGLU 6 t D F: two input halves and the output); plus the
  patch projection 2 (size / P)^2 (3 P^2) D and CLIP's projection. ViT-S/14
  at 224: 12.2 GFLOP (6.1 G multiply-adds). XLA's cost analysis of the
  compiled tower is not used: on CPU it counted about a tenth of this.
  """
  patches = (size // config.patch_size) ** 2
  t, d, f = 1 + config.registers + patches, config.hidden, config.mlp_hidden
  mlp = (6 if config.mlp == "swiglu" else 4) * t * d * f
  block = 8 * t * d * d + 4 * t * t * d + mlp
  embed = 2 * patches * 3 * config.patch_size ** 2 * d
  return float(config.depth * block + embed + 2 * d * config.projection_dim)


def _torch_peer(config, batches):
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  model = transformers.Dinov2Model(transformers.Dinov2Config(
      hidden_size=config.hidden, num_hidden_layers=config.depth,
      num_attention_heads=config.heads, intermediate_size=config.mlp_hidden,
      image_size=config.image_size, patch_size=config.patch_size)).eval()
  tensors = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous()
             for b in batches]

  def run():
    with torch.no_grad():
      return [model(pixel_values=t).pooler_output.numpy() for t in tensors]
  return {f"transformers {transformers.__version__} Dinov2Model, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads)": run}


@common.case("vit_dinov2_s14")
def vit_case(sizes):
  config = vit.PRESETS["dinov2_vits14"]
  params = vit.random_params(config)
  n, batch_size = sizes["n"], sizes["batch_size"]
  rng = np.random.default_rng(0)
  batches = [rng.normal(size=(batch_size, SIZE, SIZE, 3)).astype(np.float32)
             for _ in range(-(-n // batch_size))]

  def run():
    return [vit.forward(params, config, b)["pooled"] for b in batches]
  return common.Bench(
      run=lambda: jax.block_until_ready(run()),
      flops=flops_per_image(config) * batch_size * len(batches),
      peers=_torch_peer(config, batches), repeats=2, peer_repeats=2,
      notes=f"{n} images of {SIZE}x{SIZE} in batches of {batch_size}: CLS "
            "of a random DINOv2 ViT-S/14 (flax, HIGHEST) vs transformers' "
            "Dinov2Model in torch; images/s = n / warm s")
