"""Feature Likelihood Divergence (FLD): a mixture fitted to train, scored on test.

A mixture of isotropic Gaussians sits on the N generated samples g_j, each
with its own log-variance l_j = log v_j:

  p(x) = (1/N) sum_j N(x; g_j, v_j I_d),
  log N(x; g, v I) = -|x - g|^2 / (2 v) - (d/2) log v - (d/2) log 2 pi.

The l_j are fitted by Adam on the training features (in batches of 10,000
rows in one shuffled order, clamped to [-40, 40] after each step), with an
auxiliary "origin" component N(0.9 (x - mean_train); 0, v_0 I) of weight 1 that
gives every training point a floor likelihood while fitting only. Then

  NLL(S) = -(1 / (d |S|)) sum_{x in S} log p(x)       (nats per dimension)
  FLD    = 100 (NLL(test) - C)
  gap    = 100 (NLL(train) - NLL(test))

where C is the same procedure with k = min(N, floor(n_train / 2)) training
points as centres, fitted on the remaining training points and scored on
test: the NLL of a "model" as good as a fresh real sample of size k. All
features are first standardised by the test set's per-dimension mean and
unbiased std. Lower FLD is better; about 0 means as good as real data of the
same size. A generated set that copies training points makes their
bandwidths collapse, so train becomes far likelier than test: the gap goes
strongly negative (and FLD rises once copies dominate).

The per-sample memorisation score of the reference package is
O_j = max_i log N(x_i; g_j, v_j I) / d over the training points x_i (higher =
more likely a copy), a ranking without a threshold; see
`gendiag.metrics.memorization.copy_flags` for flags.

Conventions (those of the reference package `marcojira/fld` at ffbbf20, which
the differential test follows): nearest-neighbour initialisation
l_j = log((min_i |x_i - g_j|^2 + 1e-3) / d), Adam(lr 0.5, b1 0.9, b2 0.999,
eps 1e-8), at most 50 epochs, early stop once the epoch-mean loss after
epoch 6 is within 5e-4 of each of the previous four, 10,000 generated
samples at most (drawn without replacement). Where we differ, on purpose:
  * test dimensions with zero variance are dropped (d counts the rest)
    instead of producing NaN;
  * the squared distance of each centre to its nearest training point (and
    of each scored point to its nearest centre) is recomputed as an exact
    difference, so exact copies have distance 0 (the matmul formula leaves
    ~1e-4 and stops their bandwidth early, making O_j ~6 instead of ~17);
  * the train x centres distances are cached only within `max_cache_bytes`
    and recomputed in row blocks otherwise (the reference crashes at
    250,000 training points);
  * the training NLL (gap), row by row too (`FLDResult.train_nlls`), and the
    memorisation scores come out of the same fit, so the gap costs nothing
    extra.

Size effects are the method's, not bugs: with n_train < 2 N the baseline has
fewer centres than the model, and FLD of an ideal model is slightly negative
(about -2 at n_train = N); compare models at equal sizes.

References:
  Jiralerspong, Bose, Gemp, Qin, Bachrach & Gidel, "Feature Likelihood
  Divergence: Evaluating the Generalization of Generative Models Using
  Samples", NeurIPS 2023 (arXiv 2302.04440v4); reference package
  github.com/marcojira/fld (FLD, the "gap" mode, sample_memorization_scores).

Modules:
  mixture  the mixture, standardisation and blocked NLLs (`mixture_nll`)
  fit      the bandwidth fit (`fit_bandwidths`)
  metric   `fld`, `fld_baseline` and their results
"""

from gendiag.metrics.fld.fit import fit_bandwidths
from gendiag.metrics.fld.fit import MixtureFit
from gendiag.metrics.fld.metric import BaselineResult
from gendiag.metrics.fld.metric import default_baseline_size
from gendiag.metrics.fld.metric import fld
from gendiag.metrics.fld.metric import fld_baseline
from gendiag.metrics.fld.metric import fit_uses_key
from gendiag.metrics.fld.metric import FLDResult
from gendiag.metrics.fld.mixture import mixture_nll

__all__ = (
    "fit_bandwidths",
    "MixtureFit",
    "BaselineResult",
    "default_baseline_size",
    "fit_uses_key",
    "fld",
    "fld_baseline",
    "FLDResult",
    "mixture_nll",
)
