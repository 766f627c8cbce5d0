"""The environment a vLLM process starts with: an allow-list of Radiance's, not all of it.

Radiance's own environment holds its secrets (the admin key, key secrets, upstream API
keys named by ${VAR} in radiance.yaml); a child needs none of them. vLLM gets the
variables that locate the system, the model caches and the accelerators, and tune the
math libraries; then the backend's own `env:`, then CUDA_VISIBLE_DEVICES from `gpus`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Passed when set, by exact name.
INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TMP",
        "TEMP",
        "PYTHONUNBUFFERED",
        "PYTHONIOENCODING",
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",  # tcmalloc / Intel OpenMP, as vLLM's CPU guide preloads them
        "CC",
        "CXX",
        "XDG_CACHE_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TOKENIZERS_PARALLELISM",
    }
)
# Passed when set, by prefix: locale, the hub, vLLM, accelerators, math and collectives.
INHERITED_PREFIXES = (
    "LC_",
    "HF_",
    "HUGGINGFACE_",
    "HUGGING_FACE_",
    "TRANSFORMERS_",
    "VLLM_",
    "CUDA_",
    "NVIDIA_",
    "ROCM_",
    "HIP_",
    "HSA_",
    "OMP_",
    "KMP_",
    "MKL_",
    "OPENBLAS_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "NCCL_",
    "GLOO_",
    "TRITON_",
    "RAY_",
)
# Never inherited even under an allowed prefix (VLLM_API_KEY would lock Radiance out);
# the backend's `env:` may still set them.
SECRET_SUFFIXES = ("_KEY", "_SECRET", "_PASSWORD")


def inherited(name: str) -> bool:
    """Whether a variable of Radiance's environment is passed on to vLLM."""
    if name.upper().endswith(SECRET_SUFFIXES):
        return False
    return name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES)


def child_environment(
    parent: Mapping[str, str],
    extra: Mapping[str, str],
    gpus: Sequence[int] | None = None,
) -> dict[str, str]:
    """vLLM's environment: the allowed part of `parent`, then `extra`, then the GPUs."""
    env = {name: value for name, value in parent.items() if inherited(name)}
    env.update(extra)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return env
