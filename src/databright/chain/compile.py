"""Compile Vyper contracts in-process, once: the output is cached on disk by content hash.

The cache key is the sha256 of the vyper version, the contract's source and every ``.vy``/``.vyi``
file under the contract's folder (the interfaces and modules it can import), so editing any of them
recompiles and nothing else does. A cache hit is one small JSON file read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databright.errors import ChainError

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
_OUTPUTS = ("abi", "bytecode", "bytecode_runtime", "blueprint_bytecode")


class CompileError(ChainError):
    """A contract does not compile."""


@dataclass(frozen=True)
class CompiledContract:
    """What deploying and calling one contract needs.

    Attributes:
        name: the file's stem, e.g. ``"DataMarket"``.
        abi: the JSON ABI.
        bytecode: init code (``0x``-hex) for a normal deployment.
        bytecode_runtime: deployed code (``0x``-hex).
        blueprint_bytecode: init code (``0x``-hex) that deploys an EIP-5202 blueprint.
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    bytecode_runtime: str
    blueprint_bytecode: str


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/databright/vyper`` (``~/.cache/databright/vyper`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "databright" / "vyper"


def contract_path(name: str) -> Path:
    """The packaged source file of contract ``name`` (``"DataMarket"`` → ``.../DataMarket.vy``)."""
    return CONTRACTS_DIR / f"{name}.vy"


def _vyper_version() -> str:
    import vyper

    return str(vyper.__version__)


def cache_key(path: Path) -> str:
    """sha256 over the vyper version, the source and all sources it may import."""
    digest = hashlib.sha256()
    digest.update(_vyper_version().encode())
    digest.update(b"\0main\0" + path.read_bytes())
    root = path.parent
    for dep in sorted(p for p in root.rglob("*") if p.suffix in (".vy", ".vyi") and p != path):
        digest.update(b"\0" + dep.relative_to(root).as_posix().encode() + b"\0")
        digest.update(dep.read_bytes())
    return digest.hexdigest()


def _compile(path: Path) -> dict[str, Any]:
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle

    bundle = FilesystemInputBundle([path.parent])
    try:
        out = vyper.compile_code(
            path.read_text(),
            contract_path=path.name,
            resolved_path=path,
            input_bundle=bundle,
            output_formats=list(_OUTPUTS),
        )
    except Exception as exc:  # vyper raises many unrelated exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"cannot compile {path}: {first}") from exc
    return {key: out[key] for key in _OUTPUTS}


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_file(path: Path | str, cache_dir: Path | str | None = None) -> CompiledContract:
    """Compile a ``.vy`` file, or read its cached output.

    Args:
        path: the contract source.
        cache_dir: where outputs are cached; default :func:`default_cache_dir`.

    Returns:
        The ABI and the three bytecodes.

    Raises:
        CompileError: the source does not compile.
        NotFoundError: the file does not exist.
    """
    from databright.errors import NotFoundError

    path = Path(path).resolve()
    if not path.is_file():
        raise NotFoundError(f"no contract source at {path}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = cache / f"{path.stem}-{cache_key(path)}.json"
    data: dict[str, Any] | None = None
    if entry.is_file():
        try:
            data = json.loads(entry.read_text())
        except ValueError:  # a torn or foreign file: recompile over it
            data = None
    if data is None:
        data = _compile(path)
        try:
            _write_atomic(entry, json.dumps(data))
        except OSError:  # a read-only cache only costs speed
            pass
    return CompiledContract(name=path.stem, **data)


def compile_contract(name: str, cache_dir: Path | str | None = None) -> CompiledContract:
    """Compile one of the packaged contracts by name (``"DataMarket"``, ``"ShareToken"``)."""
    return compile_file(contract_path(name), cache_dir)
