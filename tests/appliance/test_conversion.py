"""Conversion failures are located by walking the value, in the order msgspec checks it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from msgspec import Meta

from appliance.config.schema import Config
from appliance.conversion import ConversionFailed, Failure, convert
from appliance.openai.protocol import ChatCompletionRequest


def failure(data: Any, kind: Any) -> Failure:
    with pytest.raises(ConversionFailed) as info:
        convert(data, kind)
    return info.value.failure


def test_a_value_deep_inside_is_found_with_msgspecs_own_words() -> None:
    data = {"models": [{"id": "a", "backend": "cpu", "source": "x", "replicas": 0}]}
    found = failure(data, Config)
    assert found.keys == ["models", 0, "replicas"]
    assert (found.reason, found.value, found.message) == ("value", 0, "Expected `int` >= 1")


def test_an_unknown_field_names_the_fields_there_are() -> None:
    found = failure({"server": {"portt": 1}}, Config)
    assert (found.keys, found.reason) == (["server", "portt"], "unknown_field")
    assert "port" in found.names


def test_a_bad_mapping_key_and_an_unknown_tag() -> None:
    key = failure({"tiers": {"free tier": {}}}, Config)
    assert (key.keys, key.reason) == (["tiers", "free tier"], "key")
    tag = failure({"backends": {"cpu": {"engine": "llama"}}}, Config)
    assert (tag.keys, tag.reason) == (["backends", "cpu", "engine"], "unknown_tag")
    assert set(tag.names) == {"llamacpp", "vllm", "openai"}


def test_a_missing_field_is_named_at_its_object() -> None:
    found = failure({"model": "m", "messages": [{"content": "hi"}]}, ChatCompletionRequest)
    assert (found.keys, found.reason, found.names) == (["messages", 0], "missing_field", ("role",))


def test_a_containers_length_comes_before_its_items() -> None:
    kind = Annotated[list[Annotated[str, Meta(max_length=1)]], Meta(max_length=2)]
    found = failure(["long", "b", "c"], kind)
    assert (found.keys, found.message) == ([], "Expected `array` of length <= 2")


def test_a_union_is_entered_through_the_option_the_value_fits() -> None:
    found = failure(
        {"model": "m", "messages": [], "stop": ["a", "x" * 1025]}, ChatCompletionRequest
    )
    assert found.keys == ["messages"]  # the first field msgspec checks fails first
    data = {"model": "m", "messages": [{"role": "user"}], "stop": ["a", "x" * 1025]}
    assert failure(data, ChatCompletionRequest).keys == ["stop", 1]


def test_a_check_of_the_whole_object_fails_at_the_object() -> None:
    class Range(msgspec.Struct):
        low: int
        high: int

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low is above high")

    found = failure({"r": {"low": 2, "high": 1}}, dict[str, Range])
    assert (found.keys, found.message) == (["r"], "low is above high")
