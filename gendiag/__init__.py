"""gendiag: JAX diagnostics that say how a deep generative model fails.

All metrics are pure functions of (n, d) feature arrays, real first and
generated second, with keyword-only hyperparameters (labels included) and an
explicit `jax.random` key where they are random. Every function is exported
with its result type.
"""

from gendiag.metrics.cas import CASResult
from gendiag.metrics.cas import classification_accuracy_score
from gendiag.metrics.cas_training import Recipe as CASRecipe
from gendiag.metrics.cmmd import cmmd
from gendiag.metrics.cmmd import cmmd_test
from gendiag.metrics.cmmd import CMMDResult
from gendiag.metrics.data_copying import data_copying_test
from gendiag.metrics.data_copying import DataCopyingResult
from gendiag.metrics.fld import BaselineResult
from gendiag.metrics.fld import fld
from gendiag.metrics.fld import fld_baseline
from gendiag.metrics.fld import FLDResult
from gendiag.metrics.frechet import fid
from gendiag.metrics.frechet import fid_bootstrap
from gendiag.metrics.frechet import fid_from_stats
from gendiag.metrics.frechet import FIDBootstrapResult
from gendiag.metrics.frechet import frechet_stats
from gendiag.metrics.frechet import FrechetResult
from gendiag.metrics.frechet import FrechetStats
from gendiag.metrics.frechet_delta import fid_standard_error
from gendiag.metrics.frechet_delta import FIDStandardError
from gendiag.metrics.frontiers import classifier_frontier
from gendiag.metrics.frontiers import ClassifierFrontierResult
from gendiag.metrics.frontiers import divergence_frontier
from gendiag.metrics.frontiers import divergence_frontier_from_histograms
from gendiag.metrics.frontiers import Frontier
from gendiag.metrics.frontiers import frontier_integral
from gendiag.metrics.frontiers import frontier_integral_from_histograms
from gendiag.metrics.frontiers import FrontierResult
from gendiag.metrics.frontiers import mauve
from gendiag.metrics.frontiers import mauve_from_histograms
from gendiag.metrics.gel import gel
from gendiag.metrics.gel import gel_mode_probabilities
from gendiag.metrics.gel import gel_test
from gendiag.metrics.gel import GELModeResult
from gendiag.metrics.gel import GELResult
from gendiag.metrics.gel import GELTestResult
from gendiag.metrics.inception_score import inception_score
from gendiag.metrics.inception_score import InceptionScoreResult
from gendiag.metrics.kid import kid
from gendiag.metrics.kid import KIDResult
from gendiag.metrics.manifold import manifold_radii
from gendiag.metrics.manifold import ManifoldRadii
from gendiag.metrics.memorization import auth_pct
from gendiag.metrics.memorization import AuthPctResult
from gendiag.metrics.memorization import copy_flags
from gendiag.metrics.memorization import CopyFlags
from gendiag.metrics.mmd import mmd
from gendiag.metrics.mmd import mmd_bootstrap
from gendiag.metrics.mmd import mmd_test
from gendiag.metrics.mmd import MMDBootstrapResult
from gendiag.metrics.mmd import MMDTestResult
from gendiag.metrics.mmd import witness
from gendiag.metrics.prd import classifier_pr_curve
from gendiag.metrics.prd import ClassifierPRCurve
from gendiag.metrics.prd import prd
from gendiag.metrics.prd import PRDResult
from gendiag.metrics.precision_recall import improved_pr_and_prdc
from gendiag.metrics.precision_recall import improved_precision_recall
from gendiag.metrics.precision_recall import ImprovedPRResult
from gendiag.metrics.precision_recall import prdc
from gendiag.metrics.precision_recall import PRDCResult
from gendiag.ops.kernels import Gaussian
from gendiag.ops.kernels import InverseMultiquadric
from gendiag.ops.kernels import Laplace
from gendiag.ops.kernels import median_heuristic
from gendiag.ops.kernels import Polynomial
from gendiag.ops.pr_curves import pr_curve
from gendiag.ops.pr_curves import pr_divergence
from gendiag.ops.pr_curves import PRCurve

__version__ = "0.1.0"

__all__ = (
    "CASResult",
    "classification_accuracy_score",
    "CASRecipe",
    "cmmd",
    "cmmd_test",
    "CMMDResult",
    "data_copying_test",
    "DataCopyingResult",
    "BaselineResult",
    "fld",
    "fld_baseline",
    "FLDResult",
    "fid",
    "fid_bootstrap",
    "fid_from_stats",
    "FIDBootstrapResult",
    "frechet_stats",
    "FrechetResult",
    "FrechetStats",
    "fid_standard_error",
    "FIDStandardError",
    "classifier_frontier",
    "ClassifierFrontierResult",
    "divergence_frontier",
    "divergence_frontier_from_histograms",
    "Frontier",
    "frontier_integral",
    "frontier_integral_from_histograms",
    "FrontierResult",
    "mauve",
    "mauve_from_histograms",
    "gel",
    "gel_mode_probabilities",
    "gel_test",
    "GELModeResult",
    "GELResult",
    "GELTestResult",
    "inception_score",
    "InceptionScoreResult",
    "kid",
    "KIDResult",
    "manifold_radii",
    "ManifoldRadii",
    "auth_pct",
    "AuthPctResult",
    "copy_flags",
    "CopyFlags",
    "mmd",
    "mmd_bootstrap",
    "mmd_test",
    "MMDBootstrapResult",
    "MMDTestResult",
    "witness",
    "classifier_pr_curve",
    "ClassifierPRCurve",
    "prd",
    "PRDResult",
    "improved_pr_and_prdc",
    "improved_precision_recall",
    "ImprovedPRResult",
    "prdc",
    "PRDCResult",
    "Gaussian",
    "InverseMultiquadric",
    "Laplace",
    "median_heuristic",
    "Polynomial",
    "pr_curve",
    "pr_divergence",
    "PRCurve",
)
