"""Save docs/console-dashboard.svg: the console's dashboard of a real server under load.

Starts `radiance up` on a free port with the demo model (two models, two backends), keeps a
few OpenAI SDK clients streaming at it, runs the console headless for `--seconds`, and saves
what its dashboard shows. Run it with `.venv/bin/python scripts/console_screenshot.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import threading

import openai

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui.app import ConsoleApp  # noqa: E402
from tui.client import RadianceClient  # noqa: E402

ADMIN = "screenshot-admin-key-0123456789"
READY = re.compile(r"radiance ready on (http://[^ ]+/v1)")
CONFIG = """
server: {{host: 127.0.0.1, port: 0, database: radiance.db, admin_key: {admin}, log_level: warning}}
backends:
  cpu: {{engine: llamacpp, threads: 1}}
  cpu2: {{engine: llamacpp, threads: 1}}
models:
  - {{id: tiny, name: Tiny Random Llama, backend: cpu, source: {model}, context_length: 1024,
      pricing: {{prompt: "0.10", completion: "0.40"}}}}
  - {{id: tiny-chat, name: Tiny (chat), backend: cpu2, source: {model}, context_length: 512}}
tiers:
  free: {{rpm: 20000, tpm: 10000000}}
  pro: {{rpm: 20000}}
keys:
  - {{name: search-team, tier: pro, secret: sk-search-team-0123456789}}
  - {{name: batch-jobs, tier: free, secret: sk-batch-jobs-0123456789}}
"""


def start(folder: pathlib.Path, model: pathlib.Path) -> tuple[subprocess.Popen[str], str]:
    config = folder / "radiance.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(admin=ADMIN, model=model)))
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up", str(config), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = READY.search(line)
        if match:
            return process, match.group(1)
    raise SystemExit("radiance up did not start")


def load(base_url: str, secret: str, model: str, stop: threading.Event) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    while not stop.is_set():
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Tell me about servers."}],
                max_tokens=48,
                stream=True,
            )
            for _ in stream:
                pass
        except openai.APIError:
            stop.wait(0.5)


async def shoot(url: str, seconds: float, out: pathlib.Path) -> None:
    app = ConsoleApp(RadianceClient(url, ADMIN))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(seconds)
        app.save_screenshot(str(out.name), path=str(out.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=75.0, help="load before the shot")
    parser.add_argument("--out", default=str(ROOT / "docs" / "console-dashboard.svg"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        model = folder / "tiny.gguf"
        subprocess.run(
            [sys.executable, "-m", "appliance.cli", "demo-model", str(model)], check=True, cwd=ROOT
        )
        process, base_url = start(folder, model)
        stop = threading.Event()
        clients = [
            ("sk-search-team-0123456789", "tiny"),
            ("sk-search-team-0123456789", "tiny"),
            ("sk-batch-jobs-0123456789", "tiny-chat"),
            ("sk-batch-jobs-0123456789", "tiny"),
        ]
        threads = [
            threading.Thread(target=load, args=(base_url, secret, model_id, stop), daemon=True)
            for secret, model_id in clients
        ]
        try:
            for thread in threads:
                thread.start()
            out = pathlib.Path(args.out)
            asyncio.run(shoot(base_url.removesuffix("/v1"), args.seconds, out))
            print(f"saved {out}")
        finally:
            stop.set()
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
