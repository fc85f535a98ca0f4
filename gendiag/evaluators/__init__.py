"""Metric families of the main job's report; importing registers them.

Each module registers its families with `gendiag.report.register`.
"""

from gendiag.evaluators import distances  # noqa: F401  (fid, kid, mmd)
from gendiag.evaluators import fld  # noqa: F401  (fld)
from gendiag.evaluators import gel  # noqa: F401  (gel)
from gendiag.evaluators import precision_recall  # noqa: F401
from gendiag.evaluators import cas  # noqa: F401  (cas)
from gendiag.evaluators import frontiers  # noqa: F401  (frontiers)
