"""The long fuzz: schemathesis over every operation with many examples (as a user and as
the admin), then the malformed corpus several times, against a real `radiance up` on
loopback that it starts and stops. Prints what was sent and how it was answered.

    .venv/bin/python scripts/fuzz_long.py --examples 200 --corpus-rounds 10

Bounded in count (examples per operation, corpus rounds) and in time (--max-minutes).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import ADMIN, ALICE, config_text, start_server  # noqa: E402
from fuzzing import FUZZ_TIERS, cases, schemathesis  # noqa: E402

from backends.llamacpp.demo_model import TINY, DemoModelSpec, write_demo_model  # noqa: E402


def har_statuses(path: pathlib.Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return counts
    for entry in json.loads(path.read_text())["log"]["entries"]:
        status = entry["response"]["status"]
        counts[f"{status // 100}xx" if status else "no response"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--corpus-rounds", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=40)
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_minutes * 60
    work = pathlib.Path(tempfile.mkdtemp(prefix="radiance-fuzz-"))
    models = work / "models"
    models.mkdir()
    write_demo_model(models / "tiny.gguf", TINY)
    endless = DemoModelSpec(embedding=512, layers=6, heads=8, kv_heads=4, ffn=2048, eos_bias=0.0)
    write_demo_model(models / "endless.gguf", endless)
    server = start_server(work / "server", config_text(models, tiers=FUZZ_TIERS))
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    try:
        for who, key in (("user", ALICE), ("admin", ADMIN)):
            report = work / f"{who}.har"
            result = schemathesis(server, key, report, examples=args.examples)
            seen = har_statuses(report)
            print(f"schemathesis as {who}: exit {result.returncode}, {dict(seen)}", flush=True)
            counts.update(seen)
            if result.returncode != 0:
                failures.append(f"schemathesis ({who}):\n{result.stdout[-4000:]}")
        headers = {"Authorization": f"Bearer {ALICE}", "content-type": "application/json"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            for round_ in range(args.corpus_rounds):
                if time.monotonic() > deadline:
                    print("time is up; stopping the corpus", flush=True)
                    break
                for path, raw, _ in cases():
                    try:
                        status = client.post(path, content=raw).status_code
                        counts[f"{status // 100}xx"] += 1
                        if status >= 500:
                            failures.append(f"{status} on {path} {raw[:200]!r}")
                    except httpx.HTTPError as exc:
                        counts["no response"] += 1
                        failures.append(f"{type(exc).__name__} on {path} {raw[:200]!r}")
                print(f"corpus round {round_ + 1}: {dict(counts)}", flush=True)
        alive = server.process.poll() is None
        counts["crashes"] = 0 if alive else 1
    finally:
        code = server.stop()
    sent = sum(v for k, v in counts.items() if k != "crashes")
    print(json.dumps({"sent": sent, **counts, "exit_code": code}, indent=2))
    for failure in failures[:20]:
        print(failure)
    return 1 if failures or counts["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
