# SPDX-License-Identifier: Apache-2.0
# pragma version 0.4.3
# pragma evm-version cancun
"""
@title PlainERC20
@notice A minimal ERC-20 with no checkpoints and no dividends: the gas anchor that
        benchmarks/gas.py compares ShareToken transfers against.
"""

from ethereum.ercs import IERC20

implements: IERC20

totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(supply: uint256):
    """
    @notice Mint the whole supply to the deployer.
    @param supply Tokens to create.
    """
    self.totalSupply = supply
    self.balanceOf[msg.sender] = supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=supply)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from the caller to `to`.
    @param to Receiver.
    @param amount Tokens.
    @return True
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from `owner` to `to` using the caller's allowance.
    @param owner Sender.
    @param to Receiver.
    @param amount Tokens.
    @return True
    """
    self.allowance[owner][msg.sender] -= amount
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Set `spender`'s allowance.
    @param spender Spender.
    @param amount Allowance.
    @return True
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@internal
def _transfer(owner: address, to: address, amount: uint256):
    assert to != empty(address), "erc20: zero address"
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=owner, receiver=to, value=amount)
