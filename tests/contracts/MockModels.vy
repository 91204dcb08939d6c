# pragma version 0.4.3
# pragma evm-version cancun
"""
@title MockModels
@notice Test stand-in for the ModelRegistry's `model_count` and `get_model` views: models are
        set by anyone, with any price and royalty (the property tests range over them).
"""

struct Model:
    owner: address
    dataset_id: uint256
    share_token: address
    name: String[64]
    program_digest: bytes32
    price_per_prediction: uint256
    royalty_bps: uint256
    checkpoint_count: uint256
    best_checkpoint: uint256
    best_metric_bps: uint256

model_count: public(uint256)
_models: HashMap[uint256, Model]


@external
def set_model(
    model_id: uint256,
    owner: address,
    dataset_id: uint256,
    share_token: address,
    price_per_prediction: uint256,
    royalty_bps: uint256,
):
    """
    @notice Set a model's record (ids past `model_count` raise it).
    """
    self._models[model_id] = Model(
        owner=owner,
        dataset_id=dataset_id,
        share_token=share_token,
        name="mock",
        program_digest=empty(bytes32),
        price_per_prediction=price_per_prediction,
        royalty_bps=royalty_bps,
        checkpoint_count=1,
        best_checkpoint=1,
        best_metric_bps=9000,
    )
    if model_id > self.model_count:
        self.model_count = model_id


@external
@view
def get_model(model_id: uint256) -> Model:
    """
    @notice A model's record.
    """
    return self._models[model_id]
