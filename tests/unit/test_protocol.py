from __future__ import annotations

import json

import pytest

from flexvol.core import wirejson
from flexvol.core.errors import InvalidInput
from flexvol.flex import protocol


def test_reply_render_is_one_json_object() -> None:
    reply = protocol.success(capabilities={"attach": False})
    assert json.loads(reply.render()) == {"status": "Success", "capabilities": {"attach": False}}
    assert reply.exit_code == 0


def test_failure_exits_one_and_always_has_a_message() -> None:
    reply = protocol.failure("")
    assert reply.exit_code == 1
    assert json.loads(reply.render())["message"]


def test_not_supported_exits_zero() -> None:
    assert protocol.not_supported("getvolumename").exit_code == 0


def test_attached_is_a_json_boolean() -> None:
    assert '"attached":false' in protocol.success(attached=False).render()


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"), ("   ", "empty"), ("{", "not valid JSON"), ("[]", "an array"),
    ("null", "null"), ('"x"', "a string"), ("{}x", "not valid JSON"),
    ('{"volumeID": null}', "'volumeID' must be a JSON string, not null"),
    ('{"size": 5}', "'size' must be a JSON string, not a number"),
    ('{"a": {"b": "c"}}', "not an object"),
])
def test_bad_options_json(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        protocol.parse_options(text)
    assert fragment in str(caught.value)


def test_options_with_unknown_keys_and_whitespace() -> None:
    assert protocol.parse_options(' {"volumeID": "v1", "zzz": ""} \n') == {"volumeID": "v1", "zzz": ""}


@pytest.mark.parametrize("value", [
    {"a": "é\"\\\n", "b": [1, None, True, False], "c": {"d": 2.5}}, [], {}, "x", 0,
])
def test_wirejson_round_trip_matches_json(value: object) -> None:
    assert json.loads(wirejson.dumps(value)) == value
    assert wirejson.loads(json.dumps(value)) == value


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "NaN", "Infinity", "{'a': 1}", "1 2", "tru"])
def test_wirejson_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        wirejson.loads(bad)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000])
def test_deeply_nested_options_are_invalid_input_not_an_internal_error(text: str) -> None:
    """Reliability scenario 1 (fuzzing): nesting thousands deep raised RecursionError."""
    with pytest.raises(InvalidInput, match="not valid JSON"):
        protocol.parse_options(text)
