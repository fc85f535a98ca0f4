"""Normalizing flows trained by maximum likelihood, f-divergences or MMD.

  models            `Flow`: distrax coupling flows (rational-quadratic spline
                    or affine RealNVP) with flax conditioners, optionally
                    class-conditional
  discriminator     the critic that estimates the density ratio p/q
  losses            `make_objective`: MLE, any `ops.fdiv` divergence (incl.
                    the PR-divergence, adversarial or weighted-MLE form), MMD
  trainer           `train`: optax, jitted steps, JSON-lines log, orbax
                    checkpoints and exact resume
  train_step        the trainer's jitted steps and chunks
  checkpoints       the trainer's run identity (run.json) and checkpoints
  evaluate          `evaluate`: the precision/recall family of flow samples
  sweep             `pr_tradeoff_sweep`: a lambda sweep of PR-divergence
                    fine-tunes scored by precision/recall
  sweep_objectives  the sweep's objectives (`ObjectiveSettings`, `CentredPR`)

Import the submodules (`from gendiag.flows import models, losses, trainer`).
"""
