"""Qwen3-Coder's XML calls, values typed by the tool's JSON schema::

<tool_call>
<function=get_weather>
<parameter=city>
Paris
</parameter>
</function>
</tool_call>
"""

from __future__ import annotations

import json
import re
from typing import Any

from appliance.openai.tool_formats.hermes import CLOSE, OPEN, json_call
from appliance.openai.tool_formats.model import Found, Item, Tools, decode_json, scan_blocks

_FUNCTION = re.compile(r"\s*<function=([^>\n]+)>(.*?)(?:</function>)?\s*", re.DOTALL)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|$)", re.DOTALL)


def _strip_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _json_value(value: str) -> tuple[bool, Any]:
    decoded = decode_json(value)
    if decoded is None or value[decoded[1] :].strip():
        return False, None
    return True, decoded[0]


def typed_value(value: str, kind: object) -> Any:
    """A parameter's text as the type its schema names (the text itself when it is not
    one: a string is never lost)."""
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds:
        return value
    stripped = value.strip()
    if stripped.lower() == "null" and ("null" in kinds or kind is None):
        return None
    if "boolean" in kinds and stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if "integer" in kinds:
        try:
            return int(stripped)
        except ValueError:
            pass
    ok, decoded = _json_value(stripped)
    if ok and (kind is None or "number" in kinds or "object" in kinds or "array" in kinds):
        return decoded
    return value


def xml_call(body: str, tools: Tools) -> Found | None:
    match = _FUNCTION.fullmatch(body)
    if match is None:
        return json_call(body, tools)  # the model wrote the Hermes form
    name = match.group(1).strip()
    if not tools.knows(name):
        return None
    inner = match.group(2)
    arguments: dict[str, Any] = {}
    covered = 0
    for parameter in _PARAMETER.finditer(inner):
        if inner[covered : parameter.start()].strip():
            return None  # text between parameters: not this format
        covered = parameter.end()
        key = parameter.group(1).strip()
        value = _strip_newline(parameter.group(2))
        arguments[key] = typed_value(value, tools.property_type(name, key))
    if inner[covered:].strip():
        return None
    return Found(name, json.dumps(arguments, ensure_ascii=False))


class Qwen3Coder:
    name = "qwen3_coder"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        return scan_blocks(text, final, OPEN, CLOSE, lambda body: xml_call(body, tools))
