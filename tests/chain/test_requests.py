"""Signed worker requests: the signer is recovered over method, path, body, nonce and timestamp;
anything else (another field, another signer, a malleable twin, missing headers) is refused."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.chain.requests import (
    DOMAIN_TAG,
    SIGNATURE_HEADER,
    BadRequestSignature,
    recover_request,
    request_message,
    sign_request,
)

KEY = "0x" + "11" * 32
OTHER = "0x" + "22" * 32
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ADDRESS = Account.from_key(KEY).address


def _signed(body=b'{"lease_id":"x"}', **kw):
    return sign_request(KEY, "POST", "/v1/commit", body, nonce="ab" * 16, timestamp=1_700_000_000,
                        **kw)


def test_the_message_is_the_documented_lines():
    body_hash = hashlib.sha256(b"{}").hexdigest()
    assert request_message("POST", "/v1/lease", body_hash, "ab" * 16, 17) == (
        f"{DOMAIN_TAG}\nPOST\n/v1/lease\n{body_hash}\n{'ab' * 16}\n17").encode()


def test_a_signed_request_recovers_its_signer():
    headers = _signed()
    signed = recover_request("POST", "/v1/commit", b'{"lease_id":"x"}', headers)
    assert (signed.address, signed.nonce, signed.timestamp) == (ADDRESS, "ab" * 16, 1_700_000_000)


@pytest.mark.parametrize("change", ["method", "path", "body", "nonce", "timestamp", "signer"])
def test_changing_any_signed_field_breaks_the_signature(change):
    headers = _signed()
    method, path, body = "POST", "/v1/commit", b'{"lease_id":"x"}'
    if change == "method":
        method = "PUT"
    elif change == "path":
        path = "/v1/reveal?lease=x"
    elif change == "body":
        body = b'{"lease_id":"y"}'
    elif change == "nonce":
        headers["X-DataBright-Nonce"] = "cd" * 16
    elif change == "timestamp":
        headers["X-DataBright-Timestamp"] = "1700000001"
    else:
        headers["X-DataBright-Address"] = Account.from_key(OTHER).address
    with pytest.raises(BadRequestSignature) as e:
        recover_request(method, path, body, headers)
    assert e.value.code == "bad_signature" and e.value.http_status == 401


def test_the_malleable_high_s_twin_is_refused():
    headers = _signed()
    sig = bytes.fromhex(headers[SIGNATURE_HEADER][2:])
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # v 27 <-> 28
    # the twin is a valid secp256k1 signature by the same key: only our check refuses it
    message = request_message("POST", "/v1/commit", hashlib.sha256(b'{"lease_id":"x"}').hexdigest(),
                              "ab" * 16, 1_700_000_000)
    assert Account.recover_message(encode_defunct(primitive=message), signature=twin) == ADDRESS
    headers[SIGNATURE_HEADER] = "0x" + twin.hex()
    with pytest.raises(BadRequestSignature, match="low-s"):
        recover_request("POST", "/v1/commit", b'{"lease_id":"x"}', headers)
    headers[SIGNATURE_HEADER] = "0x" + (sig[:64] + bytes([sig[64] - 27])).hex()  # v 0/1
    with pytest.raises(BadRequestSignature, match="low-s"):
        recover_request("POST", "/v1/commit", b'{"lease_id":"x"}', headers)


@pytest.mark.parametrize("drop", ["X-DataBright-Address", "X-DataBright-Nonce",
                                  "X-DataBright-Timestamp", "X-DataBright-Signature"])
def test_a_missing_header_is_missing_signature(drop):
    headers = _signed()
    del headers[drop]
    with pytest.raises(BadRequestSignature) as e:
        recover_request("POST", "/v1/commit", b'{"lease_id":"x"}', headers)
    assert e.value.code == "missing_signature"


@pytest.mark.parametrize("header,value", [
    ("X-DataBright-Address", "0x1234"), ("X-DataBright-Nonce", "AB" * 16),
    ("X-DataBright-Nonce", "ab" * 8), ("X-DataBright-Timestamp", "-5"),
    ("X-DataBright-Timestamp", "1.5"), ("X-DataBright-Signature", "0x" + "00" * 64)])
def test_malformed_headers_are_bad_signatures(header, value):
    headers = _signed()
    headers[header] = value
    with pytest.raises(BadRequestSignature) as e:
        recover_request("POST", "/v1/commit", b'{"lease_id":"x"}', headers)
    assert e.value.code == "bad_signature"


@settings(max_examples=25, deadline=None)
@given(body=st.binary(max_size=64), path=st.from_regex(r"/v1/[a-z]{1,8}(\?lease=[0-9a-f]{4})?",
                                                        fullmatch=True))
def test_any_body_and_path_round_trip(body, path):
    headers = sign_request(KEY, "POST", path, body)
    assert recover_request("POST", path, body, headers).address == ADDRESS
