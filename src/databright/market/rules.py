"""A dataset's curation rules and their defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from databright.errors import UsageError
from databright.market.units import SHARE_UNIT, format_duration, format_wei

DEFAULT_QUORUM_BPS = 2_000  # a fifth of the snapshot supply must vote
DEFAULT_APPROVAL_BPS = 5_000  # at least half of the votes cast must be yes
DEFAULT_PERIOD = 3 * 86_400
DEFAULT_STAKE = 10**16  # 0.01 ETH
DEFAULT_R0 = 100 * SHARE_UNIT  # shares per item for the very first items
DEFAULT_TRAINING_FEE = 10**16  # 0.01 ETH per model and per checkpoint, paid to the shareholders
DEFAULT_MIN_ROYALTY_BPS = 1_000  # a model's predictions pay the data at least 10 %
MAX_TRAINING_FEE = 2**128 - 1
N0_PER_SEED_ITEM = 10  # default N0 = 10 × the seed size: the seed earns ~91 % of r0 per item


@dataclass(frozen=True)
class Rules:
    """Quorum, approval, voting period, stake and the reward rule of one dataset."""

    quorum_bps: int = DEFAULT_QUORUM_BPS
    approval_bps: int = DEFAULT_APPROVAL_BPS
    voting_period: int = DEFAULT_PERIOD
    stake: int = DEFAULT_STAKE
    reward_r0: int = DEFAULT_R0
    reward_n0: int = 0  # 0: derived from the seed size at creation
    evaluator: str | None = None
    training_fee: int = DEFAULT_TRAINING_FEE
    min_royalty_bps: int = DEFAULT_MIN_ROYALTY_BPS

    @classmethod
    def of_dataset(cls, info: Any) -> Rules:
        """The rules a dataset was created with, from its on-chain record."""
        names = ("quorum_bps", "approval_bps", "voting_period", "stake", "reward_r0", "reward_n0",
                 "training_fee", "min_royalty_bps")
        evaluator = None if int(info.evaluator, 16) == 0 else info.evaluator
        return cls(**{n: getattr(info, n) for n in names}, evaluator=evaluator)

    def validated(self, seed_count: int) -> Rules:
        """Check ranges and fill the derived default of ``reward_n0``."""
        if not 0 < self.quorum_bps <= 10_000:
            raise UsageError("quorum must be above 0 and at most 1 (100%)")
        if not 0 < self.approval_bps <= 10_000:
            raise UsageError("approval must be above 0 and at most 1 (100%)")
        if self.voting_period < 60:
            raise UsageError("voting period must be at least 60s")
        if self.stake < 0 or self.reward_r0 <= 0:
            raise UsageError("stake must be ≥ 0 and the reward per item > 0")
        if not 0 <= self.training_fee <= MAX_TRAINING_FEE:
            raise UsageError("the training fee must be ≥ 0 and below 2**128 wei")
        if not 0 <= self.min_royalty_bps <= 10_000:
            raise UsageError("the minimum royalty must be between 0 and 1 (100%)")
        n0 = self.reward_n0 or max(100, N0_PER_SEED_ITEM * seed_count)
        return Rules(**{**asdict(self), "reward_n0": n0})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["quorum"] = self.quorum_bps / 10_000
        data["approval"] = self.approval_bps / 10_000
        data["voting_period_text"] = format_duration(self.voting_period)
        data["stake_text"] = format_wei(self.stake)
        data["training_fee_text"] = format_wei(self.training_fee)
        data["min_royalty"] = self.min_royalty_bps / 10_000
        return data
