"""Divergence frontiers, MAUVE and the frontier integral.

  histograms  the frontier, MAUVE and FI of two histograms (exact), and of
              log density ratios (`ratio_frontier`)
  smoothing   distribution estimators of cluster counts
  scores      counts -> smoothed histograms -> `FrontierResult` scores, the
              bootstrap and its intervals
  quantized   features -> clusters -> frontier (`divergence_frontier`,
              `mauve`, `frontier_integral`: mauve-text's pipeline)
  classifier  features -> probe log ratios -> frontier (`classifier_frontier`)
"""

from gendiag.metrics.frontiers.classifier import classifier_frontier
from gendiag.metrics.frontiers.classifier import ClassifierFrontierResult
from gendiag.metrics.frontiers.histograms import divergence_frontier_from_histograms
from gendiag.metrics.frontiers.histograms import Frontier
from gendiag.metrics.frontiers.histograms import frontier_from_histograms
from gendiag.metrics.frontiers.histograms import frontier_integral_from_histograms
from gendiag.metrics.frontiers.histograms import mauve_area
from gendiag.metrics.frontiers.histograms import mauve_from_histograms
from gendiag.metrics.frontiers.histograms import mixture_weights
from gendiag.metrics.frontiers.histograms import NUM_WEIGHTS
from gendiag.metrics.frontiers.histograms import ratio_frontier
from gendiag.metrics.frontiers.histograms import SCALING_FACTOR
from gendiag.metrics.frontiers.histograms import WEIGHT_EPS
from gendiag.metrics.frontiers.quantized import CLUSTER_RULES
from gendiag.metrics.frontiers.quantized import CUBE_ROOT_CONSTANT
from gendiag.metrics.frontiers.quantized import divergence_frontier
from gendiag.metrics.frontiers.quantized import frontier_integral
from gendiag.metrics.frontiers.quantized import mauve
from gendiag.metrics.frontiers.quantized import null_baseline
from gendiag.metrics.frontiers.quantized import num_clusters_for
from gendiag.metrics.frontiers.quantized import SMOOTHINGS
from gendiag.metrics.frontiers.scores import FrontierResult

__all__ = (
    "classifier_frontier",
    "ClassifierFrontierResult",
    "divergence_frontier_from_histograms",
    "Frontier",
    "frontier_from_histograms",
    "frontier_integral_from_histograms",
    "mauve_area",
    "mauve_from_histograms",
    "mixture_weights",
    "NUM_WEIGHTS",
    "ratio_frontier",
    "SCALING_FACTOR",
    "WEIGHT_EPS",
    "CLUSTER_RULES",
    "CUBE_ROOT_CONSTANT",
    "divergence_frontier",
    "frontier_integral",
    "mauve",
    "null_baseline",
    "num_clusters_for",
    "SMOOTHINGS",
    "FrontierResult",
)
