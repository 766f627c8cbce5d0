"""Find or build llama.cpp's own ``llama-server`` from the llama.cpp that llama-cpp-python
vendors, so the two run the same kernels.

The build downloads llama-cpp-python's sdist (the version installed here) with pip, unpacks
it under ``~/.cache/radiance/llama-server-src`` and builds only the server target in its
``vendor/llama.cpp`` (about 10 minutes on 2 cores; cmake, ninja and a C++ compiler needed):

    .venv/bin/python bench/llama_server.py          # prints the binary's path
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import tarfile

CACHE = pathlib.Path.home() / ".cache" / "radiance" / "llama-server-src"


def version() -> str:
    return importlib.metadata.version("llama_cpp_python")


def source_dir(cache: pathlib.Path = CACHE) -> pathlib.Path:
    return cache / f"llama_cpp_python-{version()}" / "vendor" / "llama.cpp"


def default_binary(cache: pathlib.Path = CACHE) -> pathlib.Path:
    return source_dir(cache) / "build" / "bin" / "llama-server"


def build(cache: pathlib.Path = CACHE, jobs: int = 2) -> pathlib.Path:
    """Download llama-cpp-python's sdist and build llama-server from its llama.cpp."""
    binary = default_binary(cache)
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{version()}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version()}",
                "-d",
                str(cache),
            ],
            check=True,
        )
    if not source_dir(cache).exists():
        with tarfile.open(sdist) as archive:
            archive.extractall(cache, filter="data")
    llama = source_dir(cache)
    subprocess.run(
        [
            "cmake",
            "-B",
            "build",
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_SERVER=ON",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_OPENSSL=OFF",
        ],
        cwd=llama,
        check=True,
    )
    subprocess.run(
        ["cmake", "--build", "build", "--target", "llama-server", f"-j{jobs}"],
        cwd=llama,
        check=True,
    )
    return binary


def command(
    binary: pathlib.Path, model: pathlib.Path, *, port: int, threads: int, parallel: int, ctx: int
) -> list[str]:
    """llama-server with ``parallel`` slots of ``ctx`` tokens each, as radiance runs them.

    The demo model's Jinja template trips llama-server's Jinja parser: ChatML is the
    same prompt without it.
    """
    return [
        str(binary),
        "--model",
        str(model),
        "--alias",
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        "--parallel",
        str(parallel),
        "--ctx-size",
        str(parallel * ctx),
        "--no-jinja",
        "--chat-template",
        "chatml",
        "--no-webui",
    ]


if __name__ == "__main__":
    print(build())
