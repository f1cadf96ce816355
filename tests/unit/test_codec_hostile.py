"""Hostile values at the edges: text UTF-8 cannot hold, ints too long for text, values nested too deep.

Params that cannot be stored are refused with a ValidationError naming the field; a
result, an error, a traceback or a progress message that holds such text is made
storable, and a result still decodes back to what the handler returned.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobkit
from jobkit import codec
from jobkit.model import Failed, Stopped
from jobkit.stages import storable

NAME = "caf\udce9.txt"  # what os.fsdecode makes of b"caf\xe9.txt"


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def _is_storable(text: str) -> bool:
    text.encode("utf-8")  # raises for a lone surrogate
    return "\x00" not in text  # PostgreSQL's text holds no NUL


# -- params: refused, naming where ------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "path"),
    [
        (NAME, "params"),
        ({"files": ["a.txt", NAME]}, "params.files[1]"),
        ({NAME: 1}, "params (the key 'caf\\udce9.txt')"),
    ],
)
def test_params_with_text_utf8_cannot_hold_are_refused_naming_the_field(data: Any, path: str) -> None:
    with pytest.raises(jobkit.ValidationError) as refused:
        codec.encode(data, what="params")
    assert str(refused.value).startswith(f"{path} holds text that UTF-8 cannot encode")
    assert "os.fsencode" in str(refused.value)
    assert refused.value.errors == [f"not UTF-8 @ {path}"]
    assert _is_storable(str(refused.value))


@pytest.mark.parametrize(
    ("data", "path"), [(10**5000, "params"), ({"n": [1, 10**5000]}, "params.n[1]")], ids=["int", "nested"]
)
def test_an_int_too_long_for_text_is_a_validation_error_naming_the_field(data: Any, path: str) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^" + path.replace("[", r"\[").replace("]", r"\]")):
        codec.encode(data, what="params")


def test_values_nested_deeper_than_python_walks_are_a_validation_error() -> None:
    with pytest.raises(jobkit.ValidationError, match="nest too deeply"):
        codec.encode(_deep(5000), what="params")
    with pytest.raises(jobkit.ValidationError, match="nest too deeply"):
        codec.unstructure(_deep(5000), what="params")
    with pytest.raises(jobkit.ValidationError, match="nest too deeply"):
        codec.check_json(_deep(5000), "params")


def test_ordinary_non_ascii_text_is_stored_as_it_was() -> None:
    assert codec.encode({"name": "café ☕"}, what="params") == '{"name":"café ☕"}'
    assert codec.storable_text("café ☕") == "café ☕"


# -- results, errors, messages: made storable ---------------------------------------------
@pytest.mark.parametrize("data", [NAME, [NAME], {"file": NAME}, {NAME: "key"}])
def test_a_result_with_such_text_is_escaped_and_decodes_back(data: Any) -> None:
    text = codec.encode(data, what="result", surrogates="escape")
    assert _is_storable(text)
    assert codec.decode(text) == data
    assert json.loads(text) == data


def test_error_text_traceback_and_reason_become_storable_and_readable() -> None:
    failed = storable(Failed(f"FileNotFoundError: {NAME}", f"Traceback ...\n{NAME}\n"))
    assert isinstance(failed, Failed)
    assert failed.error == "FileNotFoundError: caf\\udce9.txt"
    assert failed.traceback == "Traceback ...\ncaf\\udce9.txt\n"
    stopped = storable(Stopped(NAME))
    assert isinstance(stopped, Stopped) and stopped.reason == "caf\\udce9.txt"
    plain = Failed("ValueError: fine")
    assert storable(plain) is plain


@settings(deadline=None, max_examples=200)
@given(
    st.recursive(st.text() | st.integers() | st.none(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids))
)
def test_any_result_with_any_text_is_stored_as_utf8_and_round_trips(data: Any) -> None:
    text = codec.encode(data, what="result", surrogates="escape")
    assert _is_storable(text)
    assert codec.decode(text) == data


@settings(deadline=None, max_examples=200)
@given(st.text())
def test_any_params_text_is_stored_whole_or_refused_with_a_validation_error(text: str) -> None:
    try:
        encoded = codec.encode({"name": text}, what="params")
    except jobkit.ValidationError as exc:
        assert exc.errors == ["not UTF-8 @ params.name"]
    else:
        assert _is_storable(encoded) and codec.decode(encoded) == {"name": text}


@settings(deadline=None, max_examples=200)
@given(st.text())
def test_any_text_becomes_storable_and_stays_the_same_when_it_already_was(text: str) -> None:
    clean = codec.storable_text(text)
    assert _is_storable(clean)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assert clean != text
    else:
        assert (clean == text) == ("\x00" not in text)
