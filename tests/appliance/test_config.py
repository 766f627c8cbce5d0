"""radiance.yaml loading: what a user sees when the config is right, and when it is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import (
    ConfigError,
    ConfigProblem,
    LoadedConfig,
    load_config,
    parse_config_text,
)

ADMIN = "admin-secret-value-0001"
ALICE = "alice-secret-0001"
BOB = "bob-secret-0001"
ENV = {"ADMIN_KEY": ADMIN, "ALICE_KEY": ALICE}

# Line numbers in the tests below refer to this file.
VALID = f"""\
server:
  port: 8000
  database: data/radiance.db
  admin_key: ${{ADMIN_KEY}}
backends:
  cpu:
    engine: llamacpp
    threads: 4
models:
  - id: tiny
    backend: cpu
    source: models/tiny.gguf
    aliases: [small]
  - id: chat
    backend: cpu
    source: models/tiny.gguf
tiers:
  free:
    rpm: 60
keys:
  - name: alice
    secret: ${{ALICE_KEY}}
    tier: free
  - name: bob
    secret: {BOB}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder with a fake GGUF model; the working directory is that folder."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"GGUF" + bytes(28))
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(home: Path, text: str, environ: dict[str, str] | None = None) -> LoadedConfig:
    (home / "radiance.yaml").write_text(text)
    return load_config("radiance.yaml", ENV if environ is None else environ)


def errors(home: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    """The lines a user sees for a config that does not load."""
    with pytest.raises(ConfigError) as info:
        load(home, text, environ)
    assert len(info.value.problems) == len(str(info.value).splitlines())
    return str(info.value).splitlines()


def edit(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_valid_config_loads_and_resolves_paths(home: Path) -> None:
    loaded = load(home, VALID)
    config = loaded.config
    assert loaded.path == home / "radiance.yaml"
    assert loaded.base_dir == home
    assert config.server.port == 8000
    assert config.server.admin_key == ADMIN
    assert config.backends["cpu"].threads == 4
    assert [m.id for m in config.models] == ["tiny", "chat"]
    assert config.models[0].aliases == ["small"]
    assert config.keys[0].secret == ALICE
    assert config.keys[0].tier == "free"
    assert config.tiers["free"].rpm == 60
    assert loaded.database_path == home / "data" / "radiance.db"
    assert loaded.model_path(config.models[0]) == home / "models" / "tiny.gguf"
    assert loaded.model_path(config.models[1]) == home / "models" / "tiny.gguf"
    assert loaded.resolve("/abs/file.gguf") == Path("/abs/file.gguf")


def test_paths_resolve_against_the_config_folder_not_the_cwd(
    home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (home / "radiance.yaml").write_text(VALID)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    loaded = load_config(home / "radiance.yaml", ENV)
    assert loaded.model_path(loaded.config.models[0]) == home / "models" / "tiny.gguf"


def test_parse_config_text_needs_no_config_file(home: Path) -> None:
    loaded = parse_config_text(VALID, "inline.yaml", home, ENV)
    assert loaded.path == home / "inline.yaml"
    assert loaded.config.server.admin_key == ADMIN


def test_minimal_config_uses_defaults(home: Path) -> None:
    loaded = load(home, "server:\n  port: 9000\n")
    assert loaded.config.models == []
    assert loaded.database_path == home / "radiance.db"


def test_unknown_key_names_its_line_and_the_nearest_field(home: Path) -> None:
    assert errors(home, edit("  port: 8000", "  portt: 8000")) == [
        "radiance.yaml:2:3: $.server.portt: unknown field `portt` (did you mean `port`?)"
    ]


def test_unknown_top_level_key(home: Path) -> None:
    assert errors(home, edit("models:", "modles:")) == [
        "radiance.yaml:9:1: $.modles: unknown field `modles` (did you mean `models`?)"
    ]


def test_unknown_key_inside_a_named_backend(home: Path) -> None:
    assert errors(home, edit("    threads: 4", "    thread: 4")) == [
        (
            "radiance.yaml:8:5: $.backends.cpu.thread: unknown field `thread`"
            " (did you mean `threads`?)"
        )
    ]


def test_error_in_second_backend_points_at_that_backend(home: Path) -> None:
    text = edit("models:", "  gpu:\n    engine: llamacpp\n    threads: 0\nmodels:")
    assert errors(home, text) == [
        "radiance.yaml:11:14: $.backends.gpu.threads: Expected `int` >= 1"
    ]


def test_wrong_type_keeps_msgspec_message(home: Path) -> None:
    assert errors(home, edit("port: 8000", "port: eighty")) == [
        "radiance.yaml:2:9: $.server.port: Expected `int`, got `str`"
    ]


def test_number_where_text_is_expected_suggests_quotes(home: Path) -> None:
    assert errors(home, edit(f"secret: {BOB}", "secret: 1234567890")) == [
        (
            "radiance.yaml:25:13: $.keys[1].secret: Expected `str`, got `int`"
            " (put the value in quotes to keep it as text)"
        )
    ]


def test_missing_required_field(home: Path) -> None:
    text = edit("    backend: cpu\n    source: models/tiny.gguf\n    aliases", "    aliases")
    assert errors(home, text) == [
        "radiance.yaml:10:5: $.models[0]: Object missing required field `backend`"
    ]


def test_missing_source_names_what_the_engine_reads(home: Path) -> None:
    text = edit("    source: models/tiny.gguf\n    aliases", "    aliases")
    assert errors(home, text) == [
        "radiance.yaml:10:5: $.models[0]: missing required field `source`"
        " (a GGUF file for engine `llamacpp`)"
    ]


def test_invalid_name_as_a_mapping_key(home: Path) -> None:
    assert errors(home, edit("  free:", "  free tier:")) == [
        (
            'radiance.yaml:18:3: $.tiers["free tier"]: `free tier` is not a valid name'
            " (use up to 128 letters, digits and `._:/-`, starting with a letter or digit)"
        )
    ]


def test_bad_enum_value_suggests_the_nearest(home: Path) -> None:
    text = edit("  port: 8000", "  port: 8000\n  log_level: warn")
    assert errors(home, text) == [
        (
            "radiance.yaml:3:14: $.server.log_level: Invalid enum value 'warn'"
            " (did you mean `warning`?)"
        )
    ]


def test_missing_env_var_points_at_the_scalar(home: Path) -> None:
    assert errors(home, VALID, {"ADMIN_KEY": ADMIN}) == [
        (
            "radiance.yaml:22:13: $.keys[0].secret: environment variable `ALICE_KEY`"
            " is not set (export ALICE_KEY=... before starting,"
            " or write ${ALICE_KEY:-default})"
        )
    ]


def test_env_default_is_used_when_the_variable_is_unset_or_empty(home: Path) -> None:
    text = edit("${ALICE_KEY}", "${ALICE_KEY:-fallback-secret}")
    assert load(home, text, {"ADMIN_KEY": ADMIN}).config.keys[0].secret == "fallback-secret"
    empty = {"ADMIN_KEY": ADMIN, "ALICE_KEY": ""}
    assert load(home, text, empty).config.keys[0].secret == "fallback-secret"
    assert load(home, text).config.keys[0].secret == ALICE


def test_double_dollar_escapes_a_literal_reference(home: Path) -> None:
    text = edit("  - id: chat\n", '  - id: chat\n    name: "costs $${PRICE} per $$ ${UNIT}"\n')
    loaded = load(home, text, {**ENV, "UNIT": "call"})
    assert loaded.config.models[1].name == "costs ${PRICE} per $$ call"


def test_plain_scalar_from_env_is_retyped(home: Path) -> None:
    text = edit("port: 8000", "port: ${PORT}")
    text = edit("  - id: chat\n", "  - id: chat\n    embeddings: ${EMBED:-false}\n", text)
    loaded = load(home, text, {**ENV, "PORT": "9001"})
    assert loaded.config.server.port == 9001
    assert loaded.config.models[1].embeddings is False


def test_quoted_scalar_from_env_stays_text(home: Path) -> None:
    text = edit("port: 8000", 'port: "${PORT}"')
    assert errors(home, text, {**ENV, "PORT": "9001"}) == [
        "radiance.yaml:2:9: $.server.port: Expected `int`, got `str`"
    ]


def test_malformed_reference(home: Path) -> None:
    lines = errors(home, edit("database: data/radiance.db", "database: ${data"))
    assert lines == [
        (
            "radiance.yaml:3:13: $.server.database: `${` is not followed by a variable"
            " name and `}` (write ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
        )
    ]


def test_unknown_backend_suggests_the_nearest(home: Path) -> None:
    assert errors(home, edit("id: tiny\n    backend: cpu", "id: tiny\n    backend: gpu")) == [
        (
            "radiance.yaml:11:14: $.models[0].backend: backend `gpu` is not declared"
            " under `backends` (did you mean `cpu`?)"
        )
    ]


def test_unknown_tier(home: Path) -> None:
    assert errors(home, edit("tier: free", "tier: fre")) == [
        (
            "radiance.yaml:23:11: $.keys[0].tier: tier `fre` is not declared under"
            " `tiers` (did you mean `free`?)"
        )
    ]


def test_bad_engine_tag_suggests_valid_engines(home: Path) -> None:
    assert errors(home, edit("engine: llamacpp", "engine: llama")) == [
        (
            "radiance.yaml:7:13: $.backends.cpu.engine: unknown engine `llama`"
            " (did you mean `llamacpp`?)"
        )
    ]


def test_duplicate_model_id_and_alias(home: Path) -> None:
    text = edit("aliases: [small]", "aliases: [small, chat]")
    text = edit("  - id: chat\n", "  - id: chat\n    aliases: [tiny]\n", text)
    assert errors(home, text) == [
        (
            "radiance.yaml:14:9: $.models[1].id: id `chat` is already an alias of"
            " model `tiny` (line 13)"
        ),
        (
            "radiance.yaml:15:15: $.models[1].aliases[0]: alias `tiny` is already the id"
            " of model `tiny` (line 10)"
        ),
    ]


def test_duplicate_yaml_key(home: Path) -> None:
    assert errors(home, edit("  port: 8000\n", "  port: 8000\n  port: 9000\n")) == [
        "radiance.yaml:3:3: $.server.port: duplicate key `port` (first at line 2)"
    ]


def test_missing_source_suggests_a_demo_model(home: Path) -> None:
    text = edit("source: models/tiny.gguf\n    aliases", "source: models/none.gguf\n    aliases")
    assert errors(home, text) == [
        (
            f"radiance.yaml:12:13: $.models[0].source: source `{home}/models/none.gguf`"
            " does not exist (create a demo model with `radiance demo-model"
            " models/none.gguf` or point source: at a real GGUF file)"
        )
    ]


def test_source_that_is_not_gguf(home: Path) -> None:
    (home / "models" / "zip.gguf").write_bytes(b"PK\x03\x04rest")
    text = edit("source: models/tiny.gguf\n    aliases", "source: models/zip.gguf\n    aliases")
    assert errors(home, text) == [
        (
            f"radiance.yaml:12:13: $.models[0].source: source `{home}/models/zip.gguf`"
            " is not a GGUF file (a GGUF file starts with the bytes `GGUF`)"
        )
    ]


def test_source_that_is_a_folder(home: Path) -> None:
    text = edit("source: models/tiny.gguf\n    aliases", "source: models\n    aliases")
    assert errors(home, text) == [
        (
            f"radiance.yaml:12:13: $.models[0].source: source `{home}/models`"
            " is a folder, not a GGUF file"
        )
    ]


def test_database_folder_must_be_creatable(home: Path) -> None:
    assert load(home, edit("data/radiance.db", "new/deeper/radiance.db")).config
    (home / "blocker").write_text("a file, not a folder")
    assert errors(home, edit("data/radiance.db", "blocker/sub/radiance.db")) == [
        (
            "radiance.yaml:3:13: $.server.database: the folder for database"
            f" `blocker/sub/radiance.db` cannot be created: `{home}/blocker` is not a folder"
        )
    ]


def test_several_problems_are_reported_together_sorted_by_line(home: Path) -> None:
    text = edit("tier: free", "tier: gold")
    text = edit("name: bob", "name: alice", text)
    text = edit("id: tiny\n    backend: cpu", "id: tiny\n    backend: gpu", text)
    text = edit(
        "  - id: chat\n    backend: cpu\n    source: models/tiny.gguf\n",
        "  - id: chat\n    backend: cpu\n    source: models/gone.bin\n",
        text,
    )
    lines = errors(home, text)
    assert [line.split(": ")[0:2] for line in lines] == [
        ["radiance.yaml:11:14", "$.models[0].backend"],
        ["radiance.yaml:16:13", "$.models[1].source"],
        ["radiance.yaml:23:11", "$.keys[0].tier"],
        ["radiance.yaml:24:11", "$.keys[1].name"],
    ]
    assert lines[1].endswith("/models/gone.bin` does not exist")
    assert lines[2].endswith("`tiers` (expected one of: `free`)")
    assert lines[3].endswith("key name `alice` is already used (line 21)")


def test_secrets_never_appear_in_errors(home: Path) -> None:
    text = edit(f"secret: {BOB}", "secret: ${ALICE_KEY}")
    text += f"  - name: carol\n    secret: {ADMIN}\n  - name: dave\n    secret: short\n"
    with pytest.raises(ConfigError) as info:
        load(home, text)
    assert "short" in text
    assert "Expected `str` of length >= 8" in str(info.value)
    text = edit("    secret: short\n", "", text)
    text = edit("  - name: dave\n", "", text)
    lines = errors(home, text)
    assert lines == [
        (
            "radiance.yaml:25:13: $.keys[1].secret: key `bob` has the same secret as key"
            " `alice` (line 22) (give every key its own secret)"
        ),
        (
            "radiance.yaml:27:13: $.keys[2].secret: key `carol` has the same secret as"
            " `server.admin_key` (give every key its own secret)"
        ),
    ]
    for secret in (ADMIN, ALICE, "short"):
        assert secret not in "\n".join(lines)


def test_yaml_syntax_error(home: Path) -> None:
    lines = errors(home, edit("  port: 8000", "  port: 8000: 1"))
    assert lines == ["radiance.yaml:2:13: $: invalid YAML: mapping values are not allowed here"]


def test_empty_file(home: Path) -> None:
    assert errors(home, "# nothing here\n") == [
        "radiance.yaml:1:1: $: the config is empty (start from the example radiance.yaml)"
    ]


def test_missing_file(home: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("absent.yaml", ENV)
    assert str(info.value) == "absent.yaml: $: cannot read the config: No such file or directory"


def test_problem_render() -> None:
    problem = ConfigProblem("r.yaml", 3, 5, "$.a", "bad", "did you mean `b`?")
    assert problem.render() == "r.yaml:3:5: $.a: bad (did you mean `b`?)"
    assert ConfigProblem("r.yaml", 3, 5, "$.a", "bad").render() == "r.yaml:3:5: $.a: bad"
