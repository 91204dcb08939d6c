"""Sign-In with Ethereum (EIP-4361): the message, its strict parser, and its verification.

A browser wallet signs (EIP-191 ``personal_sign``) a text such as::

    127.0.0.1:8000 wants you to sign in with your Ethereum account:
    0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF

    Sign in to DataBright.

    URI: http://127.0.0.1:8000
    Version: 1
    Chain ID: 131277322940537
    Nonce: 3f9c2a61b0d84e7a
    Issued At: 2026-12-02T05:11:50Z
    Expiration Time: 2026-12-02T05:16:50Z

The server accepts it once (:func:`verify`): the domain and URI are its own, the chain is the
home's, the version is 1, the nonce is one it issued (:func:`issue_nonce`, 5 minutes) and not yet
used (it is marked used in the same database statement that checks it, so two concurrent logins
with one nonce cannot both pass), the times hold (issued not in the future, not expired, not
before ``Not Before``), and the signature recovers the address the message names (EIP-55
checksummed). Each refusal is a :class:`SiweError` with its own ``code`` (HTTP 401).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from databright.chain.signatures import recover_personal
from databright.chain.wrapper import checksum
from databright.errors import DataBrightError, UsageError
from databright.index.web import SiweNonce

NONCE_TTL = timedelta(minutes=5)
#: how far a client's clock may run ahead of ours for ``Issued At``
CLOCK_SKEW = timedelta(seconds=60)
MAX_MESSAGE_CHARS = 4096
STATEMENT = "Sign in to DataBright."

_HEADER = " wants you to sign in with your Ethereum account:"
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$")
_STATEMENT = re.compile(r"^[^\n\r]*$")
_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$"
)
_REQUEST_ID = re.compile(r"^[^\n\r]*$")
_OPTIONAL = ("Expiration Time", "Not Before", "Request ID")


class SiweError(DataBrightError):
    """A sign-in refused; ``code`` says why (``siwe_wrong_domain``, ``siwe_nonce_used``, ...)."""

    http_status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SiweMessage:
    """The fields of an EIP-4361 message; times are kept as the RFC 3339 text that was signed."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    statement: str | None = None
    version: str = "1"
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = field(default_factory=tuple)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (with ``Z`` or an offset) as an aware datetime.

    Raises:
        UsageError: not RFC 3339.
    """
    if not _TIME.match(text):
        raise UsageError(f"not an RFC 3339 time: {text!r}")
    head, _, rest = text.partition(".")
    if rest:  # Python parses at most 6 fractional digits
        digits = re.match(r"\d+", rest)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac):]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a valid time: {text!r}") from None


def format_time(ts: datetime) -> str:
    """``2026-12-02T05:11:50Z`` (UTC, whole seconds), as the server offers it to clients."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(msg: SiweMessage) -> str:
    """The exact text a wallet signs for ``msg`` (EIP-4361 layout)."""
    lines = [f"{msg.domain}{_HEADER}", msg.address, ""]
    if msg.statement is not None:
        lines.append(msg.statement)
    lines.append("")
    lines += [f"URI: {msg.uri}", f"Version: {msg.version}", f"Chain ID: {msg.chain_id}",
              f"Nonce: {msg.nonce}", f"Issued At: {msg.issued_at}"]
    for label, value in zip(_OPTIONAL, (msg.expiration_time, msg.not_before, msg.request_id),
                            strict=True):
        if value is not None:
            lines.append(f"{label}: {value}")
    if msg.resources:
        lines.append("Resources:")
        lines += [f"- {r}" for r in msg.resources]
    return "\n".join(lines)


def _bad(why: str) -> SiweError:
    return SiweError("siwe_malformed", f"not a Sign-In with Ethereum message: {why}")


def _take(lines: list[str], i: int, label: str, pattern: re.Pattern[str]) -> str:
    if i >= len(lines) or not lines[i].startswith(f"{label}: "):
        raise _bad(f"line {i + 1} must be `{label}: …`")
    value = lines[i][len(label) + 2:]
    if not pattern.match(value):
        raise _bad(f"invalid {label} {value!r}")
    return value


def parse(text: str) -> SiweMessage:
    """The fields of an EIP-4361 message, refusing anything that is not exactly its layout.

    Raises:
        SiweError: ``siwe_malformed``.
    """
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS:
        raise _bad(f"a message is text of at most {MAX_MESSAGE_CHARS} characters")
    if "\r" in text:
        raise _bad("lines end with LF only")
    lines = text.split("\n")
    if len(lines) < 9 or not lines[0].endswith(_HEADER):
        raise _bad("it must start with `<domain> wants you to sign in with your Ethereum account:`")
    domain = lines[0][: -len(_HEADER)]
    if not _DOMAIN.match(domain):
        raise _bad(f"invalid domain {domain!r}")
    address = lines[1]
    if not _ADDRESS.match(address):
        raise _bad("line 2 must be the 0x address")
    if lines[2] != "":
        raise _bad("line 3 must be empty")
    i = 3
    statement: str | None = None
    if lines[i] != "":
        statement = lines[i]
        if not _STATEMENT.match(statement) or statement.startswith("URI: "):
            raise _bad("invalid statement")
        i += 1
    if lines[i] != "":
        raise _bad("the statement must be followed by an empty line")
    i += 1
    uri = _take(lines, i, "URI", _URI)
    version = _take(lines, i + 1, "Version", re.compile(r"^1$"))
    chain_text = _take(lines, i + 2, "Chain ID", re.compile(r"^[1-9][0-9]{0,19}$"))
    nonce = _take(lines, i + 3, "Nonce", _NONCE)
    issued_at = _take(lines, i + 4, "Issued At", _TIME)
    i += 5
    optional: dict[str, str] = {}
    for label in _OPTIONAL:
        if i < len(lines) and lines[i].startswith(f"{label}: "):
            optional[label] = _take(lines, i, label,
                                    _REQUEST_ID if label == "Request ID" else _TIME)
            i += 1
    resources: list[str] = []
    if i < len(lines) and lines[i] == "Resources:":
        i += 1
        while i < len(lines) and lines[i].startswith("- "):
            if not _URI.match(lines[i][2:]):
                raise _bad(f"invalid resource {lines[i][2:]!r}")
            resources.append(lines[i][2:])
            i += 1
        if not resources:
            raise _bad("`Resources:` must list at least one URI")
    if i != len(lines):
        raise _bad(f"unexpected line {i + 1}")
    for label, value in optional.items():
        if label != "Request ID":
            parse_time(value)
    parse_time(issued_at)
    return SiweMessage(domain=domain, address=address, uri=uri, chain_id=int(chain_text),
                       nonce=nonce, issued_at=issued_at, statement=statement, version=version,
                       expiration_time=optional.get("Expiration Time"),
                       not_before=optional.get("Not Before"),
                       request_id=optional.get("Request ID"), resources=tuple(resources))


def issue_nonce(session: Session, now: datetime | None = None) -> SiweNonce:
    """A fresh random nonce, stored for :data:`NONCE_TTL`; expired nonces are purged."""
    now = now or datetime.now(UTC)
    session.execute(delete(SiweNonce).where(SiweNonce.expires_at < now))
    row = SiweNonce(nonce=secrets.token_hex(16), issued_at=now, expires_at=now + NONCE_TTL)
    session.add(row)
    session.flush()
    return row


def consume_nonce(session: Session, nonce: str, now: datetime | None = None) -> None:
    """Mark ``nonce`` used, in one conditional UPDATE (so only one of two racing logins wins).

    Raises:
        SiweError: ``siwe_nonce_used``, ``siwe_nonce_expired``, ``siwe_unknown_nonce``.
    """
    now = now or datetime.now(UTC)
    done = session.execute(
        update(SiweNonce)
        .where(SiweNonce.nonce == nonce, SiweNonce.used_at.is_(None),
               SiweNonce.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) == 1:
        return
    row = session.get(SiweNonce, nonce)
    if row is None:
        raise SiweError("siwe_unknown_nonce", "this server did not issue that nonce: "
                        "ask for a new one")
    if row.used_at is None:
        raise SiweError("siwe_nonce_expired", "that nonce expired: sign in again")
    raise SiweError("siwe_nonce_used", "that nonce was already used: sign in again")


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def verify(session: Session, text: str, signature: str, *, domain: str, origin: str,
           chain_id: int, now: datetime | None = None) -> SiweMessage:
    """Check a signed sign-in message and consume its nonce; returns the parsed message.

    Args:
        session: an index session (the nonce is marked used in it: commit it).
        text: the signed message.
        signature: the 65-byte ``personal_sign`` signature, hex.
        domain: the server's host[:port]; the message's domain must equal it.
        origin: the server's ``scheme://host[:port]``; the message's URI must be on it.
        chain_id: the home's chain id.

    Raises:
        SiweError: with a code per reason (all HTTP 401).
    """
    now = now or datetime.now(UTC)
    msg = parse(text)
    if msg.domain.lower() != domain.lower():
        raise SiweError("siwe_wrong_domain", f"the message is for {msg.domain}, this server is "
                        f"{domain}")
    if not (msg.uri == origin or msg.uri.startswith(origin.rstrip("/") + "/")):
        raise SiweError("siwe_wrong_uri", f"the message's URI {msg.uri} is not on {origin}")
    if msg.chain_id != chain_id:
        raise SiweError("siwe_wrong_chain", f"the message is for chain {msg.chain_id}, this "
                        f"server's chain is {chain_id}")
    if _aware(parse_time(msg.issued_at)) > now + CLOCK_SKEW:
        raise SiweError("siwe_issued_in_future", "the message's Issued At is in the future")
    if msg.expiration_time is not None and _aware(parse_time(msg.expiration_time)) <= now:
        raise SiweError("siwe_expired", "the sign-in message has expired: sign in again")
    if msg.not_before is not None and _aware(parse_time(msg.not_before)) > now:
        raise SiweError("siwe_not_yet_valid", "the sign-in message is not valid yet")
    try:
        named = checksum(msg.address)
    except UsageError:
        raise _bad("the address is not an address") from None
    if named != msg.address:
        raise SiweError("siwe_malformed", "the address must be EIP-55 checksummed")
    signer = recover_personal(text, signature)
    if signer != named:
        raise SiweError("siwe_wrong_signer", f"the message names {named} but {signer} signed it")
    consume_nonce(session, msg.nonce, now)
    return msg
