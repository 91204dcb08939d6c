"""The voucher books and the voucher-acceptance rule of the prediction server.

The property test drives the real :class:`PredictionService` (real EIP-712 signatures, the real
SQLite book) with a channel whose on-chain view is fixed, so thousands of vouchers run without
a chain; the end-to-end behaviour on the embedded chain is in tests/web/test_predict_server.py.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databright.chain.accounts import signer_from_key
from databright.chain.model_registry import Voucher, sign
from databright.home import Home
from databright.market.channels import (
    BOOK_FILE,
    PayeeBook,
    PayerBook,
    PayerChannel,
    ReceivedVoucher,
    sign_next,
)
from databright.market.predictions import (
    ChannelView,
    Item,
    PredictionRefused,
    PredictionService,
    VoucherClaim,
)

CHAIN = 31337
REGISTRY = "0x" + "ab" * 20
CHANNEL = 7
PAYER = signer_from_key("0x" + "11" * 32)
STRANGER = signer_from_key("0x" + "22" * 32)


class _Family:
    """Stands in for a model: the acceptance rule does not depend on what is predicted."""

    media = "image"

    def predict(self, checkpoint: object, records: list) -> list[str]:
        return ["7"] * len(records)


def _service(folder: Path, price: int, deposit: int) -> PredictionService:
    svc = PredictionService(
        home=Home(folder), model_id=1, chain_id=CHAIN, registry=REGISTRY,
        info={"price_per_prediction": price, "media": "image"}, checkpoint=None,  # type: ignore[arg-type]
        family=_Family(), payee=None)  # type: ignore[arg-type]
    view = ChannelView(CHANNEL, PAYER.address, 1, deposit, 2**40, "open")
    svc._channels[CHANNEL] = view

    def fixed(channel_id: int, n: int, *, refresh: bool = False) -> ChannelView:
        return view  # the chain's view of the channel: no top-up ever arrives

    svc._channel = fixed  # type: ignore[method-assign]
    return svc


def _claim(amount: int, key=PAYER, channel: int = CHANNEL) -> VoucherClaim:
    sig = "0x" + sign(Voucher(CHAIN, REGISTRY, channel, amount), key).hex()
    return VoucherClaim(CHAIN, REGISTRY, channel, amount, sig)


def _items(n: int) -> list[Item]:
    return [Item(f"f{i}", "image/png", bytes([i])) for i in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(price=st.integers(1, 10**6), deposit_items=st.integers(1, 40), data=st.data())
def test_a_voucher_is_accepted_exactly_when_it_pays_and_accepted_amounts_only_grow(
        price, deposit_items, data):
    deposit = price * deposit_items + data.draw(st.integers(0, price - 1), label="slack")
    with tempfile.TemporaryDirectory() as tmp:
        svc = _service(Path(tmp), price, deposit)
        accepted: list[int] = []
        for _ in range(data.draw(st.integers(1, 12), label="requests")):
            last = accepted[-1] if accepted else 0
            n = data.draw(st.integers(1, 4), label="items")
            # the edges of the rule, and anything around them
            edges = [last + price * n, last + price * n - 1, deposit, deposit + 1, last,
                     last - 1]
            amount = max(0, data.draw(st.one_of(
                st.sampled_from(edges),
                st.integers(last - 2 * price, last + 2 * price * n + 1)), label="amount"))
            honest = data.draw(st.booleans(), label="signed by the payer")
            pays = honest and last + price * n <= amount <= deposit and amount > last
            try:
                result = svc.predict(_items(n), _claim(amount, PAYER if honest else STRANGER))
            except PredictionRefused as exc:
                assert not pays, f"a paying voucher was refused: {exc.code}"
                assert exc.http_status in (401, 402, 409)
            else:
                assert pays, "a voucher that does not pay was accepted"
                assert result.charged == amount - last and len(result.labels) == n
                accepted.append(amount)
            stored = svc.book.get(CHAIN, REGISTRY, CHANNEL)
            assert (stored.amount if stored else 0) == (accepted[-1] if accepted else 0)
        assert all(b > a for a, b in itertools.pairwise(accepted))
        assert all(a <= deposit for a in accepted)
        svc.close()


def test_a_channel_being_closed_elsewhere_takes_no_voucher(tmp_path):
    svc = _service(tmp_path, 10, 1_000)
    svc.predict(_items(1), _claim(10))
    other = PayeeBook(tmp_path / BOOK_FILE)  # `databright channel close` in another process
    other.mark(CHAIN, REGISTRY, CHANNEL, "closing")
    with pytest.raises(PredictionRefused) as refused:
        svc.predict(_items(1), _claim(20))
    assert refused.value.code == "channel_closed" and refused.value.http_status == 402
    assert other.get(CHAIN, REGISTRY, CHANNEL).amount == 10
    other.close()


def test_a_missing_or_misdirected_voucher_is_refused_before_the_channel_is_read(tmp_path):
    svc = _service(tmp_path, 10, 1_000)
    del svc._channel  # reading a channel needs the chain (there is none): no case may get there
    svc._channels.clear()
    cases = {
        None: "voucher_required",
        VoucherClaim(CHAIN + 1, REGISTRY, CHANNEL, 10, _claim(10).signature): "wrong_chain",
        VoucherClaim(CHAIN, "0x" + "cd" * 20, CHANNEL, 10, _claim(10).signature):
            "wrong_registry",
    }
    for claim, code in cases.items():
        with pytest.raises(PredictionRefused) as refused:
            svc.predict(_items(1), claim)
        assert refused.value.code == code
        assert refused.value.details["price_per_prediction"] == 10
        assert refused.value.details["needed"] == 10
    assert svc.book.get(CHAIN, REGISTRY, CHANNEL) is None


def _payer_channel(deposit: int = 100) -> PayerChannel:
    return PayerChannel(CHAIN, REGISTRY, CHANNEL, 1, PAYER.address, deposit, 2**40, 0, "", 0,
                        "open")


def test_the_payer_book_notes_a_voucher_before_it_is_sent_and_survives_reopening(tmp_path):
    book = PayerBook(tmp_path / BOOK_FILE)
    book.add(_payer_channel())
    ch = book.get(CHAIN, REGISTRY, CHANNEL)
    amount, sig = sign_next(book, ch, PAYER, price=10, n=3)
    assert amount == 30
    book.close()
    again = PayerBook(tmp_path / BOOK_FILE)
    ch = again.get(CHAIN, REGISTRY, CHANNEL)
    assert (ch.signed, ch.signature, ch.accepted) == (30, sig, 0)
    again.set_accepted(ch, 30)
    # the next voucher builds on what the server accepted; the deposit bounds it
    assert sign_next(again, again.get(CHAIN, REGISTRY, CHANNEL), PAYER, 10, 7)[0] == 100
    from databright.market.channels import ChannelError

    with pytest.raises(ChannelError, match="left"):
        sign_next(again, again.get(CHAIN, REGISTRY, CHANNEL), PAYER, 10, 8)
    # a lower voucher never overwrites the highest one signed
    again.record_signed(again.get(CHAIN, REGISTRY, CHANNEL), 5, "0x00")
    assert again.get(CHAIN, REGISTRY, CHANNEL).signed == 100
    again.close()


def test_an_accepted_voucher_survives_a_sigkill_right_after_it_is_stored(tmp_path):
    src = Path(__file__).resolve().parents[2] / "src"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(src)!r})
        from databright.market.channels import PayeeBook, ReceivedVoucher
        book = PayeeBook({str(tmp_path / BOOK_FILE)!r})
        book.raise_to(ReceivedVoucher({CHAIN}, {REGISTRY!r}, {CHANNEL}, 1, "0xpayer", 4242,
                                      "0xsig", "open"), 1)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no cleanup
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    book = PayeeBook(tmp_path / BOOK_FILE)
    stored = book.get(CHAIN, REGISTRY, CHANNEL)
    assert stored == ReceivedVoucher(CHAIN, REGISTRY, CHANNEL, 1, "0xpayer", 4242, "0xsig",
                                     "open")
    book.close()
