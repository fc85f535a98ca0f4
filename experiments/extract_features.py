r"""Embeds images with the FID Inception: features.npz for FID, sFID, IS.

  python experiments/extract_features.py --workdir=OUT \
      --config.images=PATH --config.weights=FILE

Writes OUT/features.npz (pool3, spatial, logits where the weights have them,
and metadata). See configs/extract_features.py for the options.
"""

from gendiag.experiments import extract_features
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(extract_features.run, "extract_features",
              "Directory for features.npz.")
