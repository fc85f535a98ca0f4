"""Benchmark case for the flax ViT towers (DINOv2, CLIP).

vit_dinov2_s14  images per second of `gendiag.features.vit.forward` for a
                DINOv2 ViT-S/14 (the `dinov2_vits14` preset, random weights:
                speed does not depend on their values) on n preprocessed
                224 x 224 images in batches of `batch_size`, against
                transformers' `Dinov2Model` of the same shape (random init)
                run by torch on the same batches and threads. FLOPs: XLA's
                count of the compiled tower.

Without torch or transformers the case runs without the peer.
"""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from gendiag.features import vit

SIZE = 224


def flops_per_image(params, config) -> float:
  x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  compiled = jax.jit(lambda p, i: vit.VisionTransformer(config).apply(
      {"params": p}, i)).lower(params, x).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


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
      flops=flops_per_image(params, config) * batch_size * len(batches),
      peers=_torch_peer(config, batches), repeats=2, peer_repeats=2,
      notes=f"{n} images of {SIZE}x{SIZE} in batches of {batch_size}: CLS "
            "of a random DINOv2 ViT-S/14 (flax, HIGHEST) vs transformers' "
            "Dinov2Model in torch; images/s = n / warm s")
