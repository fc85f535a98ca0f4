"""The main job's report: metric families, verdicts and the files they write.

A metric family (`registry.Family`) is one function

  def kid_family(inputs: EvalInputs, key) -> FamilyOutput: ...
  FAMILY = registry.Family("kid", kid_family, needs=("real_labels",),
                           description="...")

which sees every model at once (so it can draw one figure comparing them)
and returns, per model, a dict {metric_name: entry} where an entry is
`{"value": float, "ci": [lo, hi] or None, ...}` (build it with `entry`).
An entry may carry a `reference`: the entry (value, ci) that held-out real
data scores at the model's sample size (`reference_sets`), shown beside the
model's value in the tables. Families that cap their inputs at `max_samples`
rows use the seeded random subsample of `subsample_rows`, the same rows of
a set in every family; their entries say how many rows they used
(`rows_used`, a table column).
A family whose `needs` are missing from the inputs is skipped with a note.
Adding a family = one module in `gendiag/report/families/` defining its
`FAMILY`, listed in `families.FAMILIES` (the order the report runs them).

Verdicts: a family may add plain-language findings per model
(`out.findings[model] = ["drops classes 3 and 8"]`), each derived from its
metrics with a threshold stated in the family's description or notes. A
model's verdict is its findings from every family, or "no failure detected"
when there are none.

Per-sample view: a family also stores what it computes per row
(`out.add_column(model, ColumnInfo(...), values, rows)`); `per_sample.
sample_tables` joins every family's columns per model (generated and real
tables, a combined suspicion rank), written to samples.json, and
`sample_grids` draws the image grids and the PCA map of the report's
"Samples behind the scores" section.

Modules: registry (Family, FamilyOutput, entry, select, run_families),
sampling (seeded subsamples, reference sets), render (markdown, HTML, bar
charts), verdicts, write (metrics.json, report.md, index.html; its layout
is in `write`'s docstring) and families.

  outputs = report.run_families(inputs, key, "all", registry=report.REGISTRY)
  report.write_report(workdir, inputs, outputs, meta)
"""

from gendiag.report.families import FAMILIES
from gendiag.report.families import REGISTRY
from gendiag.report.per_sample import sample_tables
from gendiag.report.per_sample import SampleTable
from gendiag.report.registry import ColumnInfo
from gendiag.report.registry import entry
from gendiag.report.registry import Family
from gendiag.report.registry import family_config
from gendiag.report.registry import family_key
from gendiag.report.registry import FamilyOutput
from gendiag.report.registry import run_families
from gendiag.report.registry import SampleColumn
from gendiag.report.registry import select
from gendiag.report.render import bar_chart
from gendiag.report.render import markdown_table
from gendiag.report.render import REFERENCE_ROW
from gendiag.report.render import render_markdown
from gendiag.report.sample_grids import pca_projection
from gendiag.report.sample_grids import sample_figures
from gendiag.report.sampling import reference_sets
from gendiag.report.sampling import ReferenceSets
from gendiag.report.sampling import run_seed
from gendiag.report.sampling import subsample_index
from gendiag.report.sampling import subsample_note
from gendiag.report.sampling import subsample_rows
from gendiag.report.verdicts import verdicts
from gendiag.report.write import write_report

__all__ = [
    "FAMILIES", "REFERENCE_ROW", "REGISTRY", "ColumnInfo", "Family",
    "FamilyOutput", "ReferenceSets", "SampleColumn", "SampleTable",
    "bar_chart", "entry", "family_config", "family_key",
    "markdown_table", "pca_projection", "reference_sets", "render_markdown",
    "run_families", "sample_figures", "sample_tables",
    "run_seed", "select", "subsample_index", "subsample_note",
    "subsample_rows", "verdicts", "write_report",
]
