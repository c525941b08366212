"""Settings for extractflow, read from the environment (prefix ``EXTRACTFLOW_``) and ``.env``.

Settings are read when :func:`get_settings` is called, never at import, so tests and notebooks
can change the environment between calls. One variable, ``EXTRACTFLOW_HOME``, redirects every
path extractflow writes by default (the SQLite database, exports, caches), so a test run never
touches the user's files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ModelPrice",
    "Settings",
    "default_home",
    "get_settings",
    "mask_url",
    "mask_url_password",
]

InstructorMode = Literal["tools", "json_schema", "json", "md_json"]
LLMProfile = Literal["local"]

#: What ``EXTRACTFLOW_LLM_PROFILE=local`` means: the bundled model served by
#: ``extractflow llm local`` on its default port, in the one instructor mode it supports.
#: Kept here (not imported from extraction.llm.local_model) so reading settings stays cheap.
#: ``llm_model`` is filled in from ``llm_local_model`` (the server lists the model by that name).
LOCAL_PROFILE: dict[str, object] = {
    "llm_base_url": "http://127.0.0.1:8765/v1",
    "llm_api_key": SecretStr("sk-local"),
    "llm_instructor_mode": "tools",
    "llm_concurrency": 2,
}
#: The catalog's default local model (extraction.llm.model_catalog.DEFAULT_LOCAL_MODEL; a test
#: keeps the two equal).
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b"
ExtractionMode = Literal["per_document", "per_variable"]


def default_home() -> Path:
    """Where extractflow keeps its files when ``EXTRACTFLOW_HOME`` is not set."""
    return Path.home() / ".extractflow"


class ModelPrice(BaseModel):
    """Price of one model in US dollars per million tokens (an entry of ``llm_prices``).

    ``cached_input_per_million`` prices prompt tokens served from the provider's prompt
    cache (``None``: the input price); ``batch_discount`` is the share of the price a Batch
    API call pays.
    """

    input_per_million: float = Field(default=0.0, ge=0)
    output_per_million: float = Field(default=0.0, ge=0)
    cached_input_per_million: float | None = Field(default=None, ge=0)
    batch_discount: float = Field(default=0.5, gt=0, le=1)
    cache_min_tokens: int = Field(default=0, ge=0)


class Settings(BaseSettings):
    """Every knob of extractflow. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="EXTRACTFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    home: Path = Field(default_factory=default_home, description="Root of extractflow's own files.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: an SQLite file at $EXTRACTFLOW_HOME/extractflow.db.",
    )
    database_echo: bool = False

    # LLM endpoint (any OpenAI-compatible server)
    llm_profile: LLMProfile | None = Field(
        default=None,
        description="'local': defaults for the server of `extractflow llm local` (explicit "
        "EXTRACTFLOW_LLM_* values still win).",
    )
    llm_local_model: str = Field(
        default=DEFAULT_LOCAL_MODEL,
        description="Which bundled model `extractflow llm local`, the local profile and the "
        "demo use (`extractflow llm models` lists them).")
    llm_base_url: str | None = None
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(default=60.0, gt=0)
    llm_instructor_mode: InstructorMode = "tools"
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_max_reasks: int = Field(default=1, ge=0, le=5)
    llm_backoff_base: float = Field(default=1.0, ge=0)
    llm_backoff_max: float = Field(default=30.0, ge=0)
    llm_retry_after_max: float = Field(default=60.0, ge=0, description="Cap on a Retry-After wait.")
    llm_request_logprobs: bool = False
    llm_prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Prices by model name; they win over the price "
        "file and the table shipped in extraction/llm/prices.yaml.")
    llm_prices_file: Path | None = Field(
        default=None, description="A YAML price table of your own (same shape as "
        "extraction/llm/prices.yaml); its models override the shipped ones.")
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="Budget cap of every run in US dollars (--max-cost "
        "wins): no new LLM call starts once spent + in flight would pass it.")
    estimate_call_seconds: float = Field(
        default=3.0, gt=0, description="Seconds per LLM call `run --estimate` assumes when "
        "the project has no observed latency yet.")
    llm_context_tokens: int = Field(default=12000, ge=500, description="Token budget per call.")
    llm_chunk_overlap_tokens: int = Field(default=200, ge=0)

    # Extraction defaults
    extraction_mode: ExtractionMode = "per_document"
    support_text_coverage: float = Field(
        default=0.6, ge=0, le=1,
        description="Share of a TEXT value's words its quote must contain to support it.")
    support_date_languages: list[str] = Field(
        default_factory=lambda: ["en", "de", "fr", "es", "it", "nl", "pt"],
        description="Languages DATE quotes are read in by the support check; [] = detect.")

    # Second opinions (extraction/run/second_opinion.py): extra LLM calls per call, off by default
    second_opinion_samples: int = Field(
        default=0, ge=0, le=10, description="Self-consistency: this many extra answers at "
        "second_opinion_temperature per call; agreement with the first answer scales the "
        "confidence. 0 = off.")
    second_opinion_temperature: float = Field(default=0.7, gt=0, le=2)
    challenger_model: str | None = Field(
        default=None, description="A second model asked the same question; disagreement "
        "lowers the confidence (or nulls the cell, see challenger_on_disagreement). None = off.")
    challenger_base_url: str | None = Field(
        default=None, description="The challenger's own endpoint; None = llm_base_url.")
    challenger_api_key: SecretStr | None = Field(
        default=None, description="The challenger endpoint's key; None = llm_api_key.")
    challenger_on_disagreement: Literal["lower", "null"] = Field(
        default="lower", description="'lower': multiply the confidence by "
        "challenger_disagreement_factor; 'null': store no value, flagged disputed.")
    challenger_disagreement_factor: float = Field(default=0.5, ge=0, le=1)

    # Refinement: share of the context window that worked examples of all variables may use
    refine_examples_share: float = Field(default=0.15, gt=0, le=0.5)

    # Concurrency and limits shared across runs and workers
    llm_concurrency: int = Field(default=8, ge=1, description="In-flight LLM calls per process.")
    global_concurrency_limit_name: str = "extractflow-llm"
    global_concurrency_limit: int = Field(default=32, ge=1)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    llm_slot_lease_seconds: float = Field(
        default=60.0, ge=60, description="Lease on a run's shared slots (Prefect's minimum is "
        "60 s), renewed at 3/4 of it; a run that dies on another host frees its slots after "
        "this plus the server's repossessor loop (on the same host: at once).")
    slot_poll_seconds: float = Field(
        default=1.0, gt=0, le=30, description="How often a run that waits for slots asks again.")
    slot_reclaim_seconds: float = Field(
        default=5.0, gt=0, description="How often a waiting run looks for slots of dead runs.")
    documents_per_chunk: int = Field(default=50, ge=1)
    # Runs (sample/full): overlap of chunks, write cadence, cancellation and resume
    rate_limit_name: str = "extractflow-llm-rate"
    chunks_in_flight: int = Field(default=2, ge=1, description="Chunks of a run in progress.")
    progress_flush_seconds: float = Field(default=1.0, gt=0)
    cancel_poll_seconds: float = Field(default=1.0, gt=0)
    job_stale_seconds: float = Field(default=60.0, gt=0, description="Silent PROCESSING = crashed.")
    stop_after_unreachable_documents: int = Field(
        default=10, ge=0, description="A run stops (FAILED) when this many documents in a row "
        "could not reach the LLM server after their retries; 0: never.")
    run_confirm_calls: int = Field(
        default=2000, ge=1, description="A run estimated above this many LLM calls needs "
        "--allow-large (a cost guard; see extraction/run/estimate.py).")
    run_confirm_tokens: int = Field(
        default=5_000_000, ge=1, description="A run estimated above this many input tokens "
        "needs --allow-large.")
    # Batch mode (`run full --batch`): the provider's Batch API, half price, answers within 24 h
    batch_max_requests: int = Field(
        default=50_000, ge=1, description="Requests per provider batch (OpenAI's limit).")
    batch_max_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="Bytes of one batch's JSONL file.")
    batch_sync_fallback: bool = Field(
        default=False, description="Ask synchronously (full price) for the lines that still "
        "failed or expired after one resubmission, and for re-asks of invalid answers.")
    batch_poll_seconds: float = Field(
        default=60.0, gt=0, description="How often `run collect --wait` asks the provider.")
    deployment_sample_run: str = "sample-run/sample-run"
    deployment_full_run: str = "full-run/full-run"
    server_port: int = Field(
        default=4200, ge=1, le=65535,
        description="Port of the local Prefect server of `extractflow server start` (UI and "
        "API on 127.0.0.1).")
    # Sharded full runs: each shard is a flow run of this deployment, on any worker
    deployment_full_run_shard: str = "full-run-shard/full-run-shard"
    deployment_ingest: str = "ingest/ingest"
    shard_attempts: int = Field(default=3, ge=1, description="Attempts of a shard that "
                                "crashes or fails before the sharded job fails.")
    shard_poll_seconds: float = Field(default=2.0, gt=0, description="How often the parent "
                                      "of a sharded run checks its shards.")
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)

    # Evaluation against gold data (`extractflow evaluate`); the report states these values
    eval_number_rtol: float = Field(default=1e-6, ge=0, description="NUMBER: relative tolerance "
                                    "of a match (math.isclose rel_tol).")
    eval_number_atol: float = Field(default=1e-9, ge=0, description="NUMBER: absolute tolerance.")
    eval_text_f1: float = Field(default=0.8, gt=0, le=1, description="TEXT: token-F1 at or "
                                "above which a normalised text matches.")
    eval_bootstrap_resamples: int = Field(default=1000, ge=100, le=100_000)
    eval_bootstrap_seed: int = Field(default=12345, description="Seed of the bootstrap "
                                     "resampling: the same seed gives the same intervals.")
    eval_calibration_bins: int = Field(default=10, ge=2, le=50)
    max_input_file_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest codebook, prompt file or "
        "review workbook the CLI reads (a workbook's unpacked size may be 20× this).")
    max_yaml_nodes: int = Field(
        default=100_000, ge=100, description="Largest codebook once YAML aliases are "
        "expanded (an alias bomb is refused instead of filling memory).")
    parse_concurrency: int = Field(default=4, ge=1)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _apply_llm_profile(self) -> Settings:
        # A profile fills in only what the user did not set, so one variable can still be
        # overridden (e.g. another port) while the rest comes from the profile.
        if self.llm_profile == "local":
            for name, value in {**LOCAL_PROFILE, "llm_model": self.llm_local_model}.items():
                if name not in self.model_fields_set:
                    object.__setattr__(self, name, value)
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'extractflow.db'}"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked, for messages and logs."""
        return mask_url_password(self.resolved_database_url)

    def __repr_args__(self):  # type: ignore[override]
        # A database URL may carry a password: never let repr() or str() show it.
        for name, value in super().__repr_args__():
            if name in ("database_url", "llm_base_url", "challenger_base_url") and value:
                value = mask_url(value)
            yield name, value

    def price_for(self, model: str) -> ModelPrice | None:
        """The price table entry of ``model``, if the user configured one."""
        return self.llm_prices.get(model)


_SECRET_PARAM = re.compile(
    r"(?i)(^|[?&;])((?:password|passwd|pwd|pass|secret|token|access_token|api[_-]?key|key|"
    r"sslpassword)=)([^&;#]*)")


def mask_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``, for messages and logs.

    Covers the forms a URL carries a secret in: the password of ``scheme://user:pw@host``
    (the user is kept for a database URL, where it helps; for HTTP URLs the whole userinfo is
    masked, since ``http://user:key@host/v1`` puts an API key in either part), and query
    parameters such as ``?password=…`` (libpq's form), ``token=`` or ``api_key=``.
    """
    if not isinstance(url, str) or not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_PARAM.sub(r"\1\2***", url)
    authority, slash, tail = rest.partition("/")
    if slash == "":  # no path: the query may follow the authority directly
        authority, question, tail = rest.partition("?")
        slash = "?" if question else ""
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if scheme.lower() in {"http", "https"}:
            userinfo = "***"
        else:
            user, colon, _ = userinfo.partition(":")
            userinfo = user + (":***" if colon else "")
        authority = f"{userinfo}@{host}"
    return f"{scheme}://{authority}{slash}" + _SECRET_PARAM.sub(r"\1\2***", tail)


def mask_url_password(url: str) -> str:
    """Kept for callers of the older name: see :func:`mask_url`."""
    return mask_url(url)


def get_settings(**overrides: object) -> Settings:
    """Read settings now (environment, then ``.env``), with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
