r"""The PR-divergence trade-off: a lambda sweep of flows, scored by P/R.

  python experiments/pr_tradeoff.py --workdir=/tmp/pr_tradeoff
  python experiments/pr_tradeoff.py --workdir=/tmp/prt_smoke \
      --config=configs/pr_tradeoff.py:smoke

Verine et al. (NeurIPS 2023) at CPU scale: flows fine-tuned with the
PR-divergence at several lam (and MLE, reverse KL) on 2-D mixtures and
digits features; precision should rise and recall fall as lam grows.
Writes tradeoff.json, tradeoff.md, tradeoff.png, samples.png and
metrics.jsonl into --workdir (`gendiag.experiments.pr_tradeoff.run`).
"""

from gendiag.experiments import pr_tradeoff
import _binary  # experiments/_binary.py, beside this file


if __name__ == "__main__":
  _binary.run(pr_tradeoff.run, "pr_tradeoff")
