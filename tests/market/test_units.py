"""Units users type: exact wei and share amounts, durations, fractions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databright.errors import UsageError
from databright.market.units import (
    format_shares,
    format_wei,
    parse_duration,
    parse_fraction_bps,
    parse_shares,
    parse_wei,
)


@pytest.mark.parametrize(
    "text,wei",
    [("0.01eth", 10**16), ("1 ETH", 10**18), ("5gwei", 5 * 10**9), ("1000", 1000),
     ("1000wei", 1000), ("0.000000000000000001eth", 1)],
)
def test_parse_wei(text, wei):
    assert parse_wei(text) == wei


@pytest.mark.parametrize("text", ["", "abc", "1.5wei", "0.0000000000000000001eth", "-1eth", "3 dollars"])
def test_parse_wei_refuses(text):
    with pytest.raises(UsageError):
        parse_wei(text)


def test_bare_number_uses_default_unit():
    assert parse_wei("2", default_unit="eth") == 2 * 10**18


@given(st.integers(min_value=0, max_value=10**30))
def test_wei_round_trips_through_text(wei):
    assert parse_wei(format_wei(wei).replace(" ETH", "eth")) == wei


@given(st.integers(min_value=0, max_value=10**30))
def test_shares_round_trip(units):
    assert parse_shares(format_shares(units)) == units


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("12h", 43200),
                                          ("3d", 259200), ("1w", 604800), ("45", 45)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3 days", "1.5h", "", "-3d"])
def test_parse_duration_refuses(text):
    with pytest.raises(UsageError):
        parse_duration(text)


@pytest.mark.parametrize("text,bps", [("0.2", 2000), ("20%", 2000), ("1", 10000), ("0.0001", 1)])
def test_parse_fraction(text, bps):
    assert parse_fraction_bps(text) == bps


@pytest.mark.parametrize("text", ["1.5", "120%", "x", "0.00001"])
def test_parse_fraction_refuses(text):
    with pytest.raises(UsageError):
        parse_fraction_bps(text)


@pytest.mark.parametrize("text,size", [("512", 512), ("4K", 4096), ("10MB", 10 * 2**20),
                                       ("1G", 2**30), ("3kib", 3072)])
def test_parse_size(text, size):
    from databright.market.units import parse_size

    assert parse_size(text) == size


def test_parse_size_refuses():
    from databright.market.units import parse_size

    with pytest.raises(UsageError):
        parse_size("ten megs")
