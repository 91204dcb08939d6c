"""The amount types of the read models: Python ``int`` for the pages, decimal strings in JSON.

Wei and share amounts have 18 decimals and pass 2**53, which a browser's ``JSON.parse`` rounds.
A field typed :data:`Wei` or :data:`Shares` holds an exact ``int`` (the HTML pages format it
with the ``eth`` filter; lists sort on it), is written as a string of decimal digits when a
JSON twin serialises the read model, and is typed so in the OpenAPI schema — the same shape
as the dashboard, model and compute APIs. A client reads one with ``BigInt(s)`` or ``int(s)``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

#: what an amount looks like in JSON: non-negative, no sign, no exponent, no separators
DIGITS = "^[0-9]+$"


_JSON = PlainSerializer(str, return_type=str, when_used="json")

#: an amount of wei (1 ETH = 10**18): ``int`` in Python, a decimal string in JSON
Wei = Annotated[int, _JSON, WithJsonSchema(
    {"type": "string", "pattern": DIGITS, "description": "wei, decimal string"},
    mode="serialization")]
#: an amount of a dataset's shares (18 decimals, 10**18 = one share): a decimal string in JSON
Shares = Annotated[int, _JSON, WithJsonSchema(
    {"type": "string", "pattern": DIGITS,
     "description": "shares (18 decimals), decimal string"}, mode="serialization")]
