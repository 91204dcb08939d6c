"""Data valuation: what items and batches are worth to a dataset, and the proposal report.

Methods are small classes with ``fit(...)`` then ``.result`` (a :class:`ValuationResult`):
:class:`KNNShapley` (exact), :class:`DataOOB`, :class:`TMCShapley`, :class:`MSRBanzhaf`,
:class:`LOO` and :class:`ProposalShapley` (batches as players); :func:`batch_gain` gives the
marginal gain of a whole batch; :func:`evaluate_proposal` builds the :class:`EvaluationReport`.
"""

from databright.valuation.features import (
    NEAR_DUPLICATE_THRESHOLD,
    Featurizer,
    ImageFeaturizer,
    PrecomputedFeaturizer,
    TabularFeaturizer,
    embedding_name,
    featurizer_for,
    near_duplicates,
)
from databright.valuation.gain import ProposalShapley, batch_gain
from databright.valuation.knn import KNNShapley
from databright.valuation.loo import LOO
from databright.valuation.montecarlo import MSRBanzhaf, TMCShapley
from databright.valuation.oob import DataOOB
from databright.valuation.report import (
    EvaluationReport,
    LabeledBlob,
    evaluate_proposal,
    score_to_bps,
)
from databright.valuation.result import ValuationResult
from databright.valuation.sampling import MaxFits, MaxSeconds, StandardErrorBelow
from databright.valuation.utility import KNNUtility, ModelUtility, knn_predict

__all__ = [
    "LOO",
    "NEAR_DUPLICATE_THRESHOLD",
    "DataOOB",
    "EvaluationReport",
    "Featurizer",
    "ImageFeaturizer",
    "KNNShapley",
    "KNNUtility",
    "LabeledBlob",
    "MSRBanzhaf",
    "MaxFits",
    "MaxSeconds",
    "ModelUtility",
    "PrecomputedFeaturizer",
    "ProposalShapley",
    "StandardErrorBelow",
    "TMCShapley",
    "TabularFeaturizer",
    "ValuationResult",
    "batch_gain",
    "embedding_name",
    "evaluate_proposal",
    "featurizer_for",
    "knn_predict",
    "near_duplicates",
    "score_to_bps",
]
