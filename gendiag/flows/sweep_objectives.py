"""The objectives of the PR-divergence sweep (`gendiag.flows.sweep`).

`ObjectiveSettings.make(name, lam)` builds each run's `losses.Objective`:
'pr' at lam (the PR-divergence D_lam of Verine et al. 2023, by default in
the centred form `CentredPR` whose Monte-Carlo loss is bounded) and the
baselines 'mle' and 'reverse_kl'.

References:
  Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
  Optimization for Generative Modeling with GANs and Normalizing Flows.
  NeurIPS 2023.
"""

import dataclasses
import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from gendiag.flows import losses
from gendiag.ops import fdiv

BASELINES = ("mle", "reverse_kl")


@functools.partial(jax.tree_util.register_dataclass, data_fields=["lam"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class CentredPR(fdiv.FDivergence):
  """The PR-divergence D_lam with the generator g(u) = f_lam(u) - lam (u - 1).

    g(u) = (1 - lam u)_+ - (1 - lam)_+,   f_lam(u) = max(lam u, 1) - max(lam, 1)

  f and f + c (u - 1) define the same divergence (E_Q[r - 1] = 0), so
  D_g = D_lam exactly; but as a Monte-Carlo loss on the flow's own samples,
  E_Q[f_lam(r)] carries the term lam E_Q[r], constant in expectation and
  of huge variance (gradient norms ~1e5 measured on the ring at lam = 10,
  which wrecked the flow), while E_Q[g(r)] = E_Q[(1 - lam r)_+] + const is
  bounded and moves only the samples where lam r < 1. Minimising it
  maximises E_Q[min(lam r, 1)], the fake-sample term of Verine et al.'s
  `PRLoss` (the generator side of their official code). (The mirror image
  for lam < 1, (lam u - 1)_+, which moves only samples with lam r > 1, was
  measured on the ring and collapsed the flow, precision 0.006 at
  lam = 0.1: model samples rarely land where the model under-covers the
  data, so that estimate rests on a few samples.)

  Attributes:
    lam: the trade-off lam > 0.
  """
  lam: float = 1.0
  name = "pr_centred"

  @property
  def f_at_zero(self):
    return 1.0 - jnp.maximum(1.0 - self.lam, 0.0)

  slope_at_infinity = 0.0

  @property
  def pr_atoms(self):
    return ((self.lam, 1.0),)

  def f(self, u):
    return (jnp.maximum(1.0 - self.lam * u, 0.0)
            - jnp.maximum(1.0 - self.lam, 0.0))

  def f_prime(self, u):
    return jnp.where(self.lam * u < 1.0, -self.lam, 0.0)

  def f_double_prime(self, u):
    return jnp.zeros_like(u)


@dataclasses.dataclass(frozen=True)
class ObjectiveSettings:
  """How the critic-based objectives ('pr', 'reverse_kl') are built.

  Attributes:
    form: 'adversarial' (the paper's), 'weighted_mle' or 'score_function'
      (`losses.make_objective`), or 'by_side': 'weighted_mle' for the PR
      runs with lam < 1 and 'adversarial' otherwise. Both are the exact
      gradient of D_lam, but each has per-sample terms only where the
      model is wrong on its own side: the weighted-MLE weights
      1[lam r > 1] / r vanish except on data the model under-covers (the
      recall side, lam < 1), the centred adversarial loss except on model
      samples with lam r < 1 (excess model mass, the precision side); the
      other form's terms there are zero-mean noise, which Adam turns into
      drift.
    auxiliary: the critic's divergence ('pearson' as in the paper).
    critic_hidden_sizes: critic MLP widths.
    ratio_range: clip of the ratio estimate.
    critic_fourier_features, critic_fourier_scale: the critic's sin input
      layer (`discriminator.Discriminator`; 0 features for none).
    centred: train the adversarial PR runs on `CentredPR` (the same
      divergence with a bounded loss); False uses f_lam itself.
  """
  form: str = "adversarial"
  auxiliary: str = "jensen_shannon"
  critic_hidden_sizes: Tuple[int, ...] = (128, 128)
  ratio_range: Tuple[float, float] = (1e-8, 1e8)
  critic_fourier_features: int = 128
  critic_fourier_scale: float = 5.0
  centred: bool = True

  def __post_init__(self):
    forms = losses.FORMS + ("by_side",)
    if self.form not in forms:
      raise ValueError(f"unknown objective form {self.form!r}; choose from "
                       f"{forms}.")

  @classmethod
  def from_dict(cls, values) -> "ObjectiveSettings":
    """From a config section (lists, e.g. from JSON, become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                  for k, v in dict(values).items()})

  def make(self, name: str, lam: Optional[float] = None
           ) -> losses.Objective:
    """The objective of run `name` ('pr', 'mle' or 'reverse_kl')."""
    if name == "mle":
      return losses.make_objective("mle")
    if name not in ("pr", "reverse_kl"):
      raise ValueError(f"unknown sweep objective {name!r}; choose 'pr' or "
                       f"one of {BASELINES}.")
    form = self.form
    if form == "by_side":
      form = "weighted_mle" if name == "pr" and lam < 1 else "adversarial"
    built = losses.make_objective(
        "fdiv", divergence=name, lam=lam if name == "pr" else None,
        form=form, auxiliary=self.auxiliary,
        critic_hidden_sizes=tuple(self.critic_hidden_sizes),
        ratio_range=tuple(self.ratio_range),
        critic_fourier_features=self.critic_fourier_features,
        critic_fourier_scale=self.critic_fourier_scale)
    if name == "pr" and form == "adversarial" and self.centred:
      # Same divergence, bounded Monte-Carlo loss (see CentredPR).
      built = losses.AdversarialFDivergence(CentredPR(lam=float(lam)),
                                            built.critic)
    return built
