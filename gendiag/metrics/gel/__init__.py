"""Generalized empirical likelihood (Ravuri et al., CVPR 2023).

  dual        the duals of EL / ET / CUE and their safeguarded solver
  objectives  the duals' values, gradients and Hessians
  moments     moment features, whitening and the stacked two-sample problem
  statistic   `gel`: per-sample weights and the GEL statistic
  test        `gel_test`: the permutation-calibrated two-sample test
  modes       `gel_mode_probabilities`: class masses (mode dropping)
"""

from gendiag.metrics.gel.dual import DualSolution
from gendiag.metrics.gel.dual import INFEASIBLE
from gendiag.metrics.gel.dual import NOT_CONVERGED
from gendiag.metrics.gel.dual import OBJECTIVES
from gendiag.metrics.gel.dual import SOLVED
from gendiag.metrics.gel.dual import STATUS_NAMES
from gendiag.metrics.gel.modes import gel_mode_probabilities
from gendiag.metrics.gel.modes import GELModeResult
from gendiag.metrics.gel.modes import hellinger
from gendiag.metrics.gel.modes import modes_core
from gendiag.metrics.gel.modes import nearest_neighbor_labels
from gendiag.metrics.gel.moments import moment_features
from gendiag.metrics.gel.statistic import gel
from gendiag.metrics.gel.statistic import GELResult
from gendiag.metrics.gel.test import default_max_moments
from gendiag.metrics.gel.test import gel_test
from gendiag.metrics.gel.test import gel_test_core
from gendiag.metrics.gel.test import GELTestResult
from gendiag.metrics.gel.test import MULTIPLIER_CAP

__all__ = (
    "DualSolution",
    "INFEASIBLE",
    "NOT_CONVERGED",
    "OBJECTIVES",
    "SOLVED",
    "STATUS_NAMES",
    "gel_mode_probabilities",
    "GELModeResult",
    "hellinger",
    "modes_core",
    "nearest_neighbor_labels",
    "moment_features",
    "gel",
    "GELResult",
    "default_max_moments",
    "gel_test",
    "gel_test_core",
    "GELTestResult",
    "MULTIPLIER_CAP",
)
