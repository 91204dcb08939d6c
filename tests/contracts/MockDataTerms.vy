# pragma version 0.4.3
# pragma evm-version cancun
"""
@title MockDataTerms
@notice Test stand-in for the DataMarket's `model_terms` view: terms are set by anyone.
"""

struct Terms:
    share_token: address
    evaluator: address
    training_fee: uint256
    min_royalty_bps: uint256
    entry_count: uint256

_terms: HashMap[uint256, Terms]


@external
def set_terms(
    dataset_id: uint256,
    share_token: address,
    evaluator: address,
    training_fee: uint256,
    min_royalty_bps: uint256,
    entry_count: uint256,
):
    """
    @notice Set a dataset's terms.
    """
    self._terms[dataset_id] = Terms(
        share_token=share_token,
        evaluator=evaluator,
        training_fee=training_fee,
        min_royalty_bps=min_royalty_bps,
        entry_count=entry_count,
    )


@external
@view
def model_terms(dataset_id: uint256) -> (address, address, uint256, uint256, uint256):
    """
    @notice The terms a model trained on `dataset_id` must meet (zeros if unknown).
    """
    t: Terms = self._terms[dataset_id]
    return t.share_token, t.evaluator, t.training_fee, t.min_royalty_bps, t.entry_count
