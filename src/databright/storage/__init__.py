"""Off-chain data: content-addressed blobs, manifests, Merkle proofs, ingestion, checks, exports."""

from databright.storage.cas import BlobStore, open_store
from databright.storage.cid import cid_digest, cid_from_digest, cid_of_bytes, cid_of_file, is_cid
from databright.storage.ingest import Duplicate, IngestResult, ingest
from databright.storage.manifest import Item, read_manifest, write_manifest
from databright.storage.merkle import MerkleTree, leaf_hash, merkle_root, verify_proof
from databright.storage.scan import Refusal

__all__ = [
    "BlobStore",
    "Duplicate",
    "IngestResult",
    "Item",
    "MerkleTree",
    "Refusal",
    "cid_digest",
    "cid_from_digest",
    "cid_of_bytes",
    "cid_of_file",
    "ingest",
    "is_cid",
    "leaf_hash",
    "merkle_root",
    "open_store",
    "read_manifest",
    "verify_proof",
    "write_manifest",
]
