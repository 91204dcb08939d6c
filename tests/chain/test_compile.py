"""The compile cache: keyed by vyper version + sources, a hit is a file read."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from databright.chain import compile as compile_mod
from databright.chain.compile import CompileError, cache_key, compile_file
from databright.errors import NotFoundError

PROBE = Path(__file__).resolve().parent / "contracts" / "Probe.vy"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(PROBE, folder / "Probe.vy")
    return folder / "Probe.vy"


def test_outputs(src: Path, tmp_path: Path) -> None:
    import vyper

    out = compile_file(src, tmp_path / "cache")
    assert out.name == "Probe"
    assert any(item.get("name") == "bump" for item in out.abi)
    # exactly what vyper itself makes of the source
    expected = vyper.compile_code(
        PROBE.read_text(), output_formats=["abi", "bytecode", "bytecode_runtime"]
    )
    assert out.abi == expected["abi"]
    assert out.bytecode == expected["bytecode"]
    assert out.bytecode_runtime == expected["bytecode_runtime"]
    assert out.blueprint_bytecode.startswith("0x")
    assert "fe7100" in out.blueprint_bytecode  # the EIP-5202 preamble inside the init code


def test_second_compile_is_a_cache_read(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = compile_file(src, cache)
    assert len(list(cache.glob("*.json"))) == 1

    def boom(path: Path) -> None:
        raise AssertionError("vyper ran on a cache hit")

    monkeypatch.setattr(compile_mod, "_compile", boom)
    t0 = time.perf_counter()
    assert compile_file(src, cache) == first
    assert time.perf_counter() - t0 < 0.05


def test_key_covers_source_and_imports(src: Path) -> None:
    key = cache_key(src)
    (src.parent / "interfaces").mkdir()
    (src.parent / "interfaces" / "IThing.vyi").write_text("@external\ndef f(): ...\n")
    with_iface = cache_key(src)
    assert with_iface != key
    src.write_text(src.read_text() + "\n# changed\n")
    assert cache_key(src) != with_iface


def test_torn_cache_file_recompiles(src: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = compile_file(src, cache)
    entry = next(cache.glob("*.json"))
    entry.write_text("{torn")
    assert compile_file(src, cache) == first


def test_bad_source(tmp_path: Path) -> None:
    bad = tmp_path / "Bad.vy"
    bad.write_text("# pragma version 0.4.3\n@external\ndef f() -> uint256:\n    return x\n")
    with pytest.raises(CompileError, match="cannot compile"):
        compile_file(bad, tmp_path / "cache")
    with pytest.raises(NotFoundError):
        compile_file(tmp_path / "Missing.vy", tmp_path / "cache")
