# pragma version 0.4.3
# @title Probe: a tiny contract for the chain layer's infrastructure tests.

counter: public(uint256)
deadline: public(uint256)

event Bumped:
    by: indexed(address)
    counter: uint256


@deploy
def __init__(period: uint256):
    self.deadline = block.timestamp + period


@external
def bump(limit: uint256) -> uint256:
    assert self.counter < limit, "probe: limit reached"
    self.counter += 1
    log Bumped(by=msg.sender, counter=self.counter)
    return self.counter


@external
@payable
def pay():
    assert msg.value == 1, "probe: wrong value"


@external
def after_deadline():
    assert block.timestamp >= self.deadline, "probe: too early"
    self.counter += 100


@view
@external
def now() -> uint256:
    return block.timestamp
