#!/usr/bin/env bash
# Install the real local models: llama-cpp-python[server] into .venv + the GGUF model files.
#   bash scripts/install_local.sh            build/install llama-cpp-python, assemble all models
#   bash scripts/install_local.sh --small    ... only the small models (Qwen2.5-Coder-0.5B, SmolLM2-135M)
#   bash scripts/install_local.sh --no-models   only llama-cpp-python
# llama-cpp-python builds from source (minutes on 2 cores); the wheel is built once into
# $HIERAMAS_WHEEL_DIR (default ~/.cache/hieramas/wheels/<version>-<build flags hash>) and
# reused by every later run on this machine (dev or CI).  Models go to $HIERAMAS_MODEL_DIR
# (default ~/.cache/hieramas/models); a verified model is never fetched again.
# Env: LLAMA_CPP_VERSION (default 0.3.36), CMAKE_ARGS (default: portable, see below).
set -euo pipefail
cd "$(dirname "$0")/.."

fetch_args=()
models=1
for arg in "$@"; do
    case "$arg" in
        --small) fetch_args+=(--small) ;;
        --no-models) models=0 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install_local.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

VPY=${VPY:-.venv/bin/python}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
# Portable and fast: no -march=native (a cached wheel must run on any CI host of the same
# arch); on x86-64 the AVX2/FMA/F16C kernels are enabled explicitly (x86-64-v3, as fast as
# native on AVX2 hosts).  Tests/examples/tools/curl are not built (shorter build).
if [ -z "${CMAKE_ARGS:-}" ]; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF"
    CMAKE_ARGS+=" -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF"
    if [ "$(uname -m)" = "x86_64" ]; then
        CMAKE_ARGS+=" -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    fi
fi
export CMAKE_ARGS
flags_hash=$(printf '%s|%s|%s' "$VERSION" "$CMAKE_ARGS" "$(uname -m)" | sha256sum | cut -c1-12)
WHEEL_DIR=${HIERAMAS_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hieramas/wheels}/$VERSION-$flags_hash
mkdir -p "$WHEEL_DIR"

installed=$("$VPY" -c 'import llama_cpp; print(llama_cpp.__version__)' 2>/dev/null || true)
if [ "$installed" = "$VERSION" ] && "$VPY" -c 'import llama_cpp.server.app' 2>/dev/null; then
    echo "llama-cpp-python $VERSION already installed"
else
    (
        flock 9  # one build at a time per machine (dev + CI)
        wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
        if [ -z "$wheel" ]; then
            echo "building llama-cpp-python $VERSION (CMAKE_ARGS=$CMAKE_ARGS) ..."
            start=$(date +%s)
            CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
                "$VPY" -m pip wheel --quiet --no-deps --wheel-dir "$WHEEL_DIR" \
                "llama-cpp-python==$VERSION"
            echo "built in $(($(date +%s) - start)) s -> $WHEEL_DIR"
        fi
    ) 9>"$WHEEL_DIR/.lock"
    wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl | head -1)
    "$VPY" -m pip install --quiet "${wheel}[server]"
    echo "installed $(basename "$wheel")"
fi

if [ "$models" = 1 ]; then
    start=$(date +%s)
    "$VPY" -m hieramas.llm.local fetch "${fetch_args[@]}"
    echo "models ready in $(($(date +%s) - start)) s"
fi
