"""The provider's Files and Batch APIs (OpenAI-compatible), wrapped with errors a user can act on.

Batch mode (:mod:`extraction.run.batch`) needs five calls: upload a JSONL file
(``files.create(purpose="batch")``), create a batch over it (``batches.create`` with
``endpoint="/v1/chat/completions"``, ``completion_window="24h"``), read a batch, download
its output and error files (``files.content``), and cancel it; plus the provider's list of
batches, to find a batch created by a process that was killed before it could store the id.

The SDK's synchronous client is used: these are a handful of calls per batch, made from a
worker thread, with the SDK's own retries (429, 5xx, connection errors) left on. A 404 on
``/files`` or ``/batches`` means the provider has no Batch API (llama.cpp, Ollama, vLLM's
server — vLLM batches offline with ``vllm run-batch``): a :class:`~extraction.errors.ConfigError`
naming the endpoint, since every batch would fail the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import openai

from config.settings import Settings, get_settings, mask_url
from extraction.errors import ConfigError, LLMError
from extraction.llm.errors import classify

__all__ = ["ENDPOINT", "BatchAPI"]

ENDPOINT = "/v1/chat/completions"
_T = TypeVar("_T")
#: Pages of the provider's batch list searched for a batch we lost track of (newest first).
_LIST_PAGES = 10


class BatchAPI:
    """The files and batches endpoints of one OpenAI-compatible provider."""

    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> BatchAPI:
        """The configured endpoint (``EXTRACTFLOW_LLM_*``), with the SDK's retries."""
        settings = settings or get_settings()
        return cls(openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value() or "not-needed",
            timeout=max(settings.llm_timeout, 120.0),  # file transfers take longer than calls
            max_retries=settings.llm_max_retries,
        ))

    @property
    def base_url(self) -> str:
        return mask_url(str(self._client.base_url))

    def _call(self, what: str, call: Callable[[], _T], *, endpoint: str) -> _T:
        try:
            return call()
        except openai.NotFoundError as exc:
            if endpoint in ("/files", "/batches"):
                raise ConfigError(
                    f"the LLM provider at {self.base_url} has no Batch API: {what} "
                    f"({endpoint}) answered 404. Run without --batch, or use a provider "
                    "with OpenAI's /v1/files and /v1/batches (OpenAI, Azure OpenAI, a "
                    "gateway that offers them)", field="batch") from exc
            raise LLMError(f"{what}: the provider at {self.base_url} does not know it "
                           f"(HTTP 404: {exc.message})", status_code=404) from exc
        except openai.OpenAIError as exc:
            error = classify(exc, attempts=1, base_url=self.base_url)
            error.detail = f"{what}: {error.detail}"
            error.args = (error.detail,)
            raise error from exc

    def upload(self, data: bytes, filename: str) -> str:
        """Upload a batch input file; returns its file id."""
        file = self._call("uploading the batch input file", lambda: self._client.files.create(
            file=(filename, data, "application/jsonl"), purpose="batch"), endpoint="/files")
        return file.id

    def create(self, input_file_id: str, metadata: dict[str, str]) -> Any:
        """Create a batch over an uploaded file; returns the provider's batch object."""
        return self._call("creating the batch", lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=ENDPOINT,  # type: ignore[arg-type]
            completion_window="24h", metadata=metadata), endpoint="/batches")

    def retrieve(self, batch_id: str) -> Any:
        """The provider's batch object now (status, request counts, file ids)."""
        return self._call(f"reading batch {batch_id}",
                          lambda: self._client.batches.retrieve(batch_id), endpoint="batch")

    def cancel(self, batch_id: str) -> Any:
        """Ask the provider to cancel a batch (it goes cancelling → cancelled)."""
        return self._call(f"cancelling batch {batch_id}",
                          lambda: self._client.batches.cancel(batch_id), endpoint="batch")

    def content(self, file_id: str) -> bytes:
        """The bytes of an output or error file."""
        response = self._call(f"downloading file {file_id}",
                              lambda: self._client.files.content(file_id), endpoint="file")
        return response.content

    def batches(self) -> Iterator[Any]:
        """The provider's batches, newest first, a bounded number of pages."""
        page = self._call("listing batches", lambda: self._client.batches.list(limit=100),
                          endpoint="/batches")
        for _ in range(_LIST_PAGES):
            yield from page.data
            if not page.has_next_page():
                return
            page = self._call("listing batches", page.get_next_page, endpoint="/batches")

    def find(self, metadata: dict[str, str]) -> Any | None:
        """The newest batch whose metadata holds every item of ``metadata``, if any."""
        for batch in self.batches():
            found = batch.metadata or {}
            if all(found.get(k) == v for k, v in metadata.items()):
                return batch
        return None

    def close(self) -> None:
        self._client.close()
