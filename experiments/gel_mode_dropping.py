r"""GEL vs improved P/R, density/coverage, MMD/KID and FID on mode dropping.

  python experiments/gel_mode_dropping.py --workdir=/tmp/gel_mode_dropping
  python experiments/gel_mode_dropping.py --workdir=/tmp/g \
      --config=configs/gel_mode_dropping.py:smoke

Simulated models drop 0..k classes or weight them unevenly; each metric's
Spearman and Pearson correlation with the true degree is the result
(the paper's claim: GEL predicts it up to 60% better than improved P/R).
Writes metrics.jsonl (a line per model, as it goes), results.json,
table.md and gel_mode_dropping.png into --workdir.
"""

from gendiag.experiments import gel_mode_dropping
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(gel_mode_dropping.run, "gel_mode_dropping")
