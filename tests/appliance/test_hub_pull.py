"""hf:// sources: the real huggingface_hub download path against a fake hub on loopback."""

from __future__ import annotations

import pathlib
import textwrap
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import ADMIN, BOB, start_server
from fake_hub import FakeHub, serve_hub
from test_cli import radiance
from webhook_receiver import Receiver, serve_receiver

from appliance.config import ConfigError, parse_config_text
from appliance.hub.download import DownloadError, cached_file, download
from appliance.hub.progress import DownloadProgress
from appliance.hub.repository import cached_repo, download_repo
from appliance.hub.source import HubRepo, HubSource


@pytest.fixture
def hub(models_dir: pathlib.Path) -> Iterator[FakeHub]:
    with serve_hub(FakeHub()) as running:
        running.add("acme/tiny", "tiny.gguf", (models_dir / "tiny.gguf").read_bytes())
        yield running


def test_an_interrupted_download_resumes_and_is_verified(
    hub: FakeHub, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so the bytes before the cut reach the file and the retry asks for the rest.
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    source = HubSource.parse("hf://acme/tiny/tiny.gguf", ".gguf")
    content = hub.files["acme/tiny/tiny.gguf"]
    hub.cut_after = 400_000
    seen: list[tuple[str, int]] = []

    def progress(state: DownloadProgress) -> None:
        seen.append((state.state, state.done_bytes))

    assert cached_file(source, tmp_path) is None
    path = download(source, tmp_path, endpoint=hub.url, on_progress=progress)
    assert path.read_bytes() == content
    first, resumed = hub.gets()
    assert first.range is None
    assert resumed.range is not None and resumed.range.startswith("bytes=")
    start = int(resumed.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 400_000
    assert seen[-1] == ("done", len(content))
    assert ("verifying", len(content)) in seen
    # Now it is in the models folder: found without the network, and not fetched again.
    assert cached_file(source, tmp_path) == path
    again = download(source, tmp_path, endpoint=hub.url)
    assert again == path and len(hub.gets()) == 2


def test_a_corrupt_download_is_rejected_and_not_kept(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    source = HubSource.parse("hf://acme/tiny/tiny.gguf", ".gguf")
    hub.corrupt = True
    with pytest.raises(DownloadError, match="sha256") as info:
        download(source, tmp_path, endpoint=hub.url)
    assert "removed" in str(info.value)
    assert cached_file(source, tmp_path) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size > 1000]
    hub.corrupt = False
    assert (
        download(source, tmp_path, endpoint=hub.url).read_bytes()
        == hub.files["acme/tiny/tiny.gguf"]
    )


def test_a_missing_file_is_a_clear_error(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    with pytest.raises(DownloadError, match=r"no file `nope\.gguf` in acme/tiny"):
        download(HubSource.parse("hf://acme/tiny/nope.gguf", ".gguf"), tmp_path, endpoint=hub.url)


def test_config_accepts_hub_sources_and_points_at_malformed_ones(tmp_path: pathlib.Path) -> None:
    good = textwrap.dedent(
        """
        server: {models_dir: cache}
        backends: {cpu: {engine: llamacpp}}
        models:
          - {id: a, backend: cpu, source: "hf://acme/tiny/tiny.gguf"}
          - {id: b, backend: cpu, source: "hf://acme/tiny@v2/sub/dir/b.gguf"}
        """
    )
    loaded = parse_config_text(good, "radiance.yaml", tmp_path, {})
    assert loaded.models_dir == tmp_path / "cache"
    bad = good.replace("hf://acme/tiny@v2/sub/dir/b.gguf", "hf://acme/tiny.gguf")
    with pytest.raises(ConfigError) as info:
        parse_config_text(bad, "radiance.yaml", tmp_path, {})
    (line,) = str(info.value).splitlines()
    assert line.startswith("radiance.yaml:6:")
    assert "$.models[1].source" in line and "hf://OWNER/REPO/PATH.gguf" in line


def test_radiance_pull_downloads_and_prints_the_path(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    env = {"HF_ENDPOINT": hub.url}
    folder = tmp_path / "models"
    pulled = radiance("pull", "hf://acme/tiny/tiny.gguf", "--models-dir", str(folder), env=env)
    assert pulled.returncode == 0, pulled.stderr
    path = pathlib.Path(pulled.stdout.strip())
    assert path.is_file() and path.is_relative_to(folder)
    assert path.read_bytes() == hub.files["acme/tiny/tiny.gguf"]
    missing = radiance("pull", "hf://acme/tiny/gone.gguf", "--models-dir", str(folder), env=env)
    assert missing.returncode == 1 and "no file `gone.gguf`" in missing.stderr
    malformed = radiance("pull", "hf://acme", "--models-dir", str(folder), env=env)
    assert malformed.returncode == 1 and "hf://OWNER/REPO/PATH.gguf" in malformed.stderr


@pytest.mark.slow
def test_up_downloads_hub_models_and_serves_the_ones_it_could_get(
    hub: FakeHub, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    config = textwrap.dedent(
        f"""
        server: {{host: 127.0.0.1, port: 0, admin_key: {ADMIN}, models_dir: hub-cache}}
        backends: {{cpu: {{engine: llamacpp, threads: 1}}}}
        models:
          - {{id: pulled, backend: cpu, source: "hf://acme/tiny/tiny.gguf", context_length: 256}}
          - {{id: absent, backend: cpu, source: "hf://acme/tiny/absent.gguf"}}
        keys:
          - {{name: bob, secret: {BOB}}}
        """
    )
    server = start_server(tmp_path / "server", config, timeout=120)
    closing: list[openai.OpenAI] = []
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
        closing.append(client)
        reply = client.chat.completions.create(
            model="pulled", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.choices[0].message.content is not None
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="absent", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
        assert info.value.status_code == 503
        assert info.value.body["code"] == "model_unavailable"  # type: ignore[index]
        admin = {"Authorization": f"Bearer {ADMIN}"}
        absent = httpx.get(f"{server.base_url}/models/absent", headers=admin).json()
        assert absent["status"] == "failed" and "no file `absent.gguf`" in absent["error"]
        assert absent["download"]["state"] == "failed"
        pulled = httpx.get(f"{server.base_url}/models/pulled", headers=admin).json()
        assert pulled["status"] == "ready" and pulled["source"] == "hf://acme/tiny/tiny.gguf"
        log = server.log()
        assert "pulled: 100%" in log and log.count("pulled: ") < 20
        assert "model absent failed to load" in log
        assert list((tmp_path / "server" / "hub-cache").glob("models--acme--tiny/blobs/*"))
    finally:
        for client in closing:
            client.close()
        server.stop()
    # The next start finds the file in the models folder and asks the hub nothing.
    hub.requests.clear()
    only_pulled = "\n".join(line for line in config.splitlines() if "absent" not in line)
    server = start_server(tmp_path / "server", only_pulled)
    server.stop()
    assert hub.requests == []


@pytest.mark.slow
def test_a_deployment_from_the_hub_reports_its_download_and_a_missing_file_fails_it(
    hub: FakeHub, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, models_dir: pathlib.Path
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    config = textwrap.dedent(
        f"""
        server: {{host: 127.0.0.1, port: 0, admin_key: {ADMIN}, models_dir: hub-cache}}
        backends: {{cpu: {{engine: llamacpp, threads: 1}}}}
        models:
          - {{id: local, backend: cpu, source: "{models_dir / "tiny.gguf"}", context_length: 256}}
        keys:
          - {{name: bob, secret: {BOB}}}
        """
    )
    server = start_server(tmp_path / "server", config)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    closing: list[openai.OpenAI] = []
    try:
        with serve_receiver(Receiver()) as receiver:
            events = ["deployment.status_changed", "model.failed"]
            hook = {"url": receiver.url, "events": events}
            assert httpx.post(f"{server.base_url}/webhooks", json=hook, headers=admin).is_success
            for name, file in (("pulled", "tiny.gguf"), ("missing", "absent.gguf")):
                body = {
                    "modelId": name,
                    "source": f"hf://acme/tiny/{file}",
                    "pricing": {"prompt": "0.5", "completion": "1.5"},
                    "configuration": {"backend": "cpu", "contextLength": 256},
                }
                reply = httpx.post(f"{server.base_url}/deployments", json=body, headers=admin)
                assert reply.status_code == 202, reply.text

            def statuses(name: str) -> list[str]:
                return [
                    r.event["data"]["status"]
                    for r in receiver.of_type("deployment.status_changed")
                    if r.event["data"]["deployment"]["id"] == name
                ]

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                len(statuses("pulled")) >= 3 and len(statuses("missing")) >= 2
            ):
                time.sleep(0.05)
            # Delivered at least once, not in order.
            assert sorted(set(statuses("pulled"))) == ["downloading", "loading", "ready"]
            assert sorted(set(statuses("missing"))) == ["downloading", "failed"]
            failed = receiver.of_type("model.failed")
            assert [r.event["data"]["model"] for r in failed] == ["missing"]

        pulled = httpx.get(f"{server.base_url}/deployments/pulled", headers=admin).json()["data"]
        assert pulled["download"]["state"] == "done" and pulled["download"]["percent"] == 100.0
        missing = httpx.get(f"{server.base_url}/deployments/missing", headers=admin).json()["data"]
        assert missing["status"] == "failed" and "no file `absent.gguf`" in missing["error"]
        assert missing["download"]["state"] == "failed"

        client = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
        closing.append(client)
        listed = {m.id: m for m in client.models.list()}
        assert listed["pulled"].pricing == {"prompt": "0.5", "completion": "1.5"}  # type: ignore[attr-defined]
        for model in ("pulled", "local"):
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            # A random model may end at once; it never passes max_tokens.
            assert reply.usage is not None and reply.usage.prompt_tokens > 0
            assert reply.usage.completion_tokens <= 3
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="missing", messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
        assert info.value.status_code == 503
        assert "no file `absent.gguf`" in info.value.message
        assert "pulled: 100%" in server.log()
    finally:
        for client in closing:
            client.close()
        server.stop()


def test_a_whole_repository_downloads_at_one_commit_and_is_found_offline(
    hub: FakeHub, tmp_path: pathlib.Path
) -> None:
    files = {"config.json": b'{"a": 1}', "model.safetensors": bytes(range(256)) * 400}
    for name, content in files.items():
        hub.add("acme/folder", name, content)
    hub.cut_after = 30_000  # the first file's connection drops once; it resumes
    repo = HubRepo.parse("hf://acme/folder")
    assert repo is not None and HubRepo.parse("acme/folder") == repo
    assert HubRepo.parse("./acme/folder") is None and HubRepo.parse("/srv/x") is None
    seen: list[tuple[str, int, int | None]] = []
    folder = download_repo(
        repo,
        tmp_path,
        endpoint=hub.url,
        on_progress=lambda p: seen.append((p.state, p.done_bytes, p.total_bytes)),
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in files} == files
    total = sum(len(c) for c in files.values())
    assert seen[-1] == ("done", total, total)
    assert any(state == "downloading" and 0 < done < total for state, done, _ in seen)
    hub.requests.clear()
    assert cached_repo(repo, tmp_path) == folder and hub.requests == []
    assert cached_repo(HubRepo("acme/other"), tmp_path) is None


def test_a_missing_or_corrupt_repository_is_refused(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    with pytest.raises(DownloadError, match="no repository acme/nothing"):
        download_repo(HubRepo("acme/nothing"), tmp_path, endpoint=hub.url)
    hub.add("acme/bad", "config.json", b"{}")
    hub.corrupt = True
    with pytest.raises(DownloadError, match="sha256"):
        download_repo(HubRepo("acme/bad"), tmp_path, endpoint=hub.url)
    assert cached_repo(HubRepo("acme/bad"), tmp_path) is None


def test_radiance_pull_fetches_the_repositories_of_vllm_models(
    hub: FakeHub, tmp_path: pathlib.Path
) -> None:
    hub.add("acme/folder", "config.json", b"{}")
    hub.add("acme/folder", "model.safetensors", b"weights" * 1000)
    (tmp_path / "vllm" / "bin").mkdir(parents=True)
    (tmp_path / "vllm" / "bin" / "python").symlink_to("/bin/true")
    config = tmp_path / "radiance.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            server: {{models_dir: pulled}}
            backends: {{gpu: {{engine: vllm, python: vllm/bin/python}},
                       cpu: {{engine: llamacpp}}}}
            models:
              - {{id: big, backend: gpu, source: "hf://acme/folder"}}
              - {{id: small, backend: cpu, source: "hf://acme/tiny/tiny.gguf"}}
              - {{id: local, backend: cpu, source: "{tmp_path / "tiny.gguf"}"}}
            """
        )
    )
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(28))
    pulled = radiance("pull", "--config", str(config), env={"HF_ENDPOINT": hub.url})
    assert pulled.returncode == 0, pulled.stderr
    folder, file = (pathlib.Path(line) for line in pulled.stdout.split())
    assert folder.is_dir() and (folder / "model.safetensors").read_bytes() == b"weights" * 1000
    assert file.name == "tiny.gguf" and file.is_relative_to(tmp_path / "pulled")
    bad = config.read_text().replace("hf://acme/folder", "hf://acme")
    with pytest.raises(ConfigError) as info:
        parse_config_text(bad, "radiance.yaml", tmp_path, {})
    assert "is not a hub repository" in str(info.value)
