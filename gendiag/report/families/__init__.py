"""The metric families of the main job's report, in the order it runs them.

Each module defines its family function and `FAMILY`, a
`gendiag.report.registry.Family`. Adding a family = one module here plus
its `FAMILY` in `FAMILIES`; nothing registers itself on import.
"""

from gendiag.report.families import cas
from gendiag.report.families import cmmd
from gendiag.report.families import fid
from gendiag.report.families import fld
from gendiag.report.families import frontiers
from gendiag.report.families import gel
from gendiag.report.families import image_scores
from gendiag.report.families import kid
from gendiag.report.families import mmd
from gendiag.report.families import precision_recall
from gendiag.report.registry import by_name

FAMILIES = (fid.FAMILY, image_scores.FAMILY, kid.FAMILY, mmd.FAMILY, cmmd.FAMILY,
            fld.FAMILY, gel.FAMILY, precision_recall.FAMILY, cas.FAMILY,
            frontiers.FAMILY)

# name -> Family, in the order of FAMILIES (`select`'s and `run_families`'s
# `registry`).
REGISTRY = by_name(FAMILIES)
