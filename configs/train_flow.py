r"""Config of experiments/train_flow.py: train one flow, evaluate its samples.

The argument is a comma-separated list: a dataset, then options.

  dataset   ring    8 Gaussians on a circle (2-D; the default)
            grid    25 Gaussians on a 5 x 5 grid (2-D)
            digits  sklearn's digits embedded by the shipped CNN (64-d)
  smoke     a few steps on little data (seconds; what the tests run)

  python experiments/train_flow.py --workdir=/tmp/flow_ring \
      --config=configs/train_flow.py:ring
  python experiments/train_flow.py --workdir=/tmp/flow_digits \
      --config=configs/train_flow.py:digits
  python experiments/train_flow.py --workdir=/tmp/flow_smoke \
      --config=configs/train_flow.py:grid,smoke

Choose the objective and its settings with overrides, e.g. the PR-divergence
at lam = 5 in the paper's form (a chi^2 critic's ratio, f on flow samples),
fine-tuning 1000 steps of maximum likelihood:

  --config.objective.name=fdiv_adversarial --config.objective.divergence=pr \
  --config.objective.lam=5 --config.train.pretrain_mle_steps=1000

  objective.name        mle | fdiv_adversarial | fdiv_weighted_mle |
                        fdiv_score_function | mmd
  objective.divergence  a key of gendiag.ops.fdiv.DIVERGENCES (kl,
                        reverse_kl, pearson, hellinger, jensen_shannon,
                        total_variation, pr)
  objective.lam         the PR trade-off (> 0; used only with pr): large
                        favours precision, small recall
  objective.critic_fourier_features  width of the critic's sin(W x + b)
                        input layer (0: a plain MLP)
  flow.kind             spline | affine
  flow.conditional      class-conditional on the mixture component / digit

Rerunning with the same workdir resumes from the last checkpoint.
Writes metrics.json, samples.npz, pr.png and (2-D) samples.png.
"""

import ml_collections

from gendiag.data import flow_datasets


def get_config(arg: str = ""):
  parts = [p.strip() for p in arg.split(",") if p.strip()]
  dataset = "ring"
  if parts and parts[0] in flow_datasets.DATASETS:
    dataset = parts.pop(0)
  smoke = "smoke" in parts
  unknown = [p for p in parts if p != "smoke"]
  if unknown:
    raise ValueError(f"unknown config options {unknown}; use "
                     f"'[{'|'.join(flow_datasets.DATASETS)}][,smoke]'.")
  two_d = dataset != "digits"

  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name=dataset, num_train=4000, num_test=1000, std=0.05,
      extractor="digits_net"))
  config.flow = ml_collections.ConfigDict(dict(
      kind="spline", num_layers=4 if two_d else 6,
      hidden_sizes=(64, 64) if two_d else (256, 256), num_bins=8,
      conditional=False, permutation="reverse" if two_d else "random"))
  config.objective = ml_collections.ConfigDict(dict(
      name="mle", divergence="pr", lam=1.0, auxiliary="pearson",
      critic_hidden_sizes=(64, 64) if two_d else (256, 256),
      # sin input layer of the critic: resolves the 2-D mixtures' narrow
      # modes (gendiag.flows.discriminator); none on 64-d features
      critic_fourier_features=128 if two_d else 0, critic_fourier_scale=10.0,
      kernel="gaussian", bandwidth_multipliers=(0.5, 1.0, 2.0)))
  config.train = ml_collections.ConfigDict(dict(
      num_steps=3000, batch_size=256, learning_rate=1e-3,
      critic_learning_rate=1e-3, critic_weight_decay=0.0, critic_steps=2,
      critic_warmup_steps=500,
      grad_clip=1.0,
      pretrain_mle_steps=0, pretrain_learning_rate=1e-3, log_every=100,
      checkpoint_every=500))
  config.eval = ml_collections.ConfigDict(dict(
      k_pr=3, k_prdc=5, prd_num_clusters=20, prd_num_runs=10, mauve=True))

  if smoke:
    config.data.update(num_train=400, num_test=200)
    config.flow.update(num_layers=2, hidden_sizes=(16,), num_bins=4)
    config.objective.critic_hidden_sizes = (16,)
    config.train.update(num_steps=20, batch_size=64, log_every=10,
                        checkpoint_every=10, critic_steps=1,
                        critic_warmup_steps=5)
    config.eval.update(prd_num_clusters=5, prd_num_runs=2, mauve=False)
  return config
