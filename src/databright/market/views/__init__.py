"""Read models of the web pages, from the index alone (never the chain): plain dataclasses that
the HTML pages and their JSON twins both render.

Every function takes an open index session (and, where manifests or cards are read, the blob
store: those blobs are immutable by CID, so what is parsed is cached per CID). Each costs a
fixed number of indexed queries whatever the number of datasets, proposals or votes. Amounts
are typed :data:`Wei` or :data:`Shares`: exact ``int`` for the pages, decimal strings in JSON.
"""

from databright.market.views.amounts import Shares, Wei
from databright.market.views.blobs import card_of, manifest_items

__all__ = ["Shares", "Wei", "card_of", "manifest_items"]
