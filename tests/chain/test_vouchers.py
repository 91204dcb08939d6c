"""The fast voucher check agrees with the EIP-712 helpers and with the contract's rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from databright.chain.accounts import signer_from_key
from databright.chain.model_registry import Voucher, digest, recover, sign
from databright.chain.vouchers import SECP256K1N_HALF, VoucherVerifier, canonical

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY = signer_from_key("0x" + "42" * 32)


@settings(max_examples=40, deadline=None)
@given(chain_id=st.integers(1, 2**64), registry=st.binary(min_size=20, max_size=20),
       channel=st.integers(0, 2**256 - 1), amount=st.integers(0, 2**256 - 1))
def test_digest_and_signer_match_the_eip712_helpers(chain_id, registry, channel, amount):
    address = "0x" + registry.hex()
    voucher = Voucher(chain_id, address, channel, amount)
    fast = VoucherVerifier(chain_id, address)
    assert fast.digest(channel, amount) == digest(voucher)
    sig = sign(voucher, KEY)
    assert fast.signer(channel, amount, sig) == recover(voucher, sig) == KEY.address
    assert fast.signer(channel, amount + 1 if amount < 2**256 - 1 else 0, sig) != KEY.address


def test_only_canonical_signatures_count():
    v = VoucherVerifier(31337, "0x" + "ab" * 20)
    sig = sign(Voucher(31337, "0x" + "ab" * 20, 3, 10), KEY)
    s = int.from_bytes(sig[32:64], "big")
    assert s <= SECP256K1N_HALF and canonical(sig)
    twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    assert recover(Voucher(31337, "0x" + "ab" * 20, 3, 10), twin) == KEY.address  # off chain
    assert v.signer(3, 10, twin) is None  # but not by the contract's rule
    assert v.signer(3, 10, sig[:64] + bytes([sig[64] - 27])) == KEY.address  # v as 0/1
    for bad in (sig[:64] + b"\x05", b"\0" * 32 + sig[32:], sig[:32] + b"\0" * 32 + sig[64:],
                sig[:64], "0xzz"):
        assert v.signer(3, 10, bad) is None
