"""The converter and the JSON rules: strict primitives, field paths, refusals, the size cap."""

import dataclasses
import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobkit
from jobkit import codec


@attrs.frozen
class Inner:
    name: str
    tags: set[str] = attrs.field(factory=set)


@attrs.frozen
class Outer:
    width: int
    ratio: float = 1.0
    flag: bool = False
    inner: Inner | None = None
    items: list[Inner] = attrs.field(factory=list)
    extra: dict[str, Any] = attrs.field(factory=dict)


@dataclasses.dataclass(frozen=True)
class Pair:
    left: int
    right: str


def _errors(data: Any, type_: Any) -> list[str]:
    with pytest.raises(jobkit.ValidationError) as caught:
        codec.structure(data, type_, what="params")
    return caught.value.errors


# -- structure -------------------------------------------------------------------------
def test_plain_data_is_structured_into_the_type() -> None:
    got = codec.structure(
        {"width": 3, "ratio": 2, "inner": {"name": "a", "tags": ["x"]}, "items": [{"name": "b"}]}, Outer, what="params"
    )
    assert got == Outer(width=3, ratio=2.0, inner=Inner("a", {"x"}), items=[Inner("b")])
    assert type(got.ratio) is float


def test_instances_are_checked_like_plain_data() -> None:
    assert codec.structure(Pair(1, "a"), Pair, what="params") == Pair(1, "a")
    # an attrs instance built without validation still has to fit its declared field types
    with pytest.raises(jobkit.ValidationError, match=r"@ params\.width"):
        codec.structure(Outer(width="3"), Outer, what="params")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "type_", "message"),
    [
        ({"width": "3"}, Outer, "invalid params: invalid value for type, expected int @ params.width"),
        ({"width": True}, Outer, "invalid params: invalid value for type, expected int @ params.width"),
        ({"width": 1.0}, Outer, "invalid params: invalid value for type, expected int @ params.width"),
        ({"width": 1, "ratio": "x"}, Outer, "invalid params: invalid value for type, expected float @ params.ratio"),
        ({"width": 1, "ratio": False}, Outer, "invalid params: invalid value for type, expected float @ params.ratio"),
        ({"width": 1, "flag": 1}, Outer, "invalid params: invalid value for type, expected bool @ params.flag"),
        ({}, Outer, "invalid params: required field missing @ params.width"),
        ({"width": 1, "colour": "red"}, Outer, "invalid params: extra fields found (colour) @ params"),
        (
            {"width": 1, "inner": {"name": 5}},
            Outer,
            "invalid params: invalid value for type, expected str @ params.inner.name",
        ),
        (
            {"width": 1, "items": [{"name": "a"}, {"nam": "b"}]},
            Outer,
            "invalid params: required field missing @ params.items[1].name; extra fields found (nam) @ params.items[1]",
        ),
        ({"left": 1, "right": 2}, Pair, "invalid params: invalid value for type, expected str @ params.right"),
        (["1", 2], list[int], "invalid params: invalid value for type, expected int @ params[0]"),
        ({"a": "1"}, dict[str, int], "invalid params: invalid value for type, expected int @ params['a']"),
    ],
)
def test_validation_error_names_the_field_path(data: Any, type_: Any, message: str) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        codec.structure(data, type_, what="params")
    assert str(caught.value) == message
    assert caught.value.errors == message.removeprefix("invalid params: ").split("; ")
    assert caught.value.value is data
    assert isinstance(caught.value, ValueError)


def test_several_problems_are_all_reported() -> None:
    errors = _errors({"width": "x", "ratio": "y"}, Outer)
    assert sorted(errors) == [
        "invalid value for type, expected float @ params.ratio",
        "invalid value for type, expected int @ params.width",
    ]


def test_what_names_the_root_of_the_path() -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^invalid result: .* @ result\.width$"):
        codec.structure({"width": "3"}, Outer, what="result")


@pytest.mark.parametrize(("data", "got"), [("just a string", "str"), (None, "NoneType"), (42, "int"), ([1], "list")])
@pytest.mark.parametrize("type_", [Outer, Pair])
def test_wrong_shape_says_an_object_was_expected(data: Any, got: str, type_: Any) -> None:
    assert _errors(data, type_) == [f"expected an object of fields (a dict), got {got} @ params"]


def test_wrong_shape_of_a_nested_object_names_its_path() -> None:
    assert _errors({"width": 1, "inner": "x"}, Outer) == [
        "expected an object of fields (a dict), got str @ params.inner"
    ]


def test_strict_primitives_at_the_top() -> None:
    assert codec.structure(3, int, what="params") == 3
    assert codec.structure(3, float, what="params") == 3.0
    assert _errors("3", int) == ["invalid type (expected int, got str '3') @ params"]
    assert _errors(True, int) == ["invalid type (expected int, got bool True) @ params"]
    assert _errors(3, str) == ["invalid type (expected str, got int 3) @ params"]
    assert _errors(0, bool) == ["invalid type (expected bool, got int 0) @ params"]


# -- JSON rules ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message", "error"),
    [
        (math.nan, "params is nan; JSON cannot store NaN or infinity", "not finite @ params"),
        ({"a": math.inf}, "params.a is inf; JSON cannot store NaN or infinity", "not finite @ params.a"),
        ({"a": [1, -math.inf]}, "params.a[1] is -inf; JSON cannot store NaN or infinity", "not finite @ params.a[1]"),
        (
            {"a": {1, 2}},
            "params.a is a set, which JSON cannot store; use a list, or declare the field as set[...]",
            "not JSON @ params.a",
        ),
        (
            [frozenset({1})],
            "params[0] is a frozenset, which JSON cannot store; use a list, or declare the field as set[...]",
            "not JSON @ params[0]",
        ),
        (
            {"blob": b"\x00\x01"},
            "params.blob is a bytes, which JSON cannot store; encode it as text (e.g. base64) first",
            "not JSON @ params.blob",
        ),
        (
            {"k": {1: "one"}},
            "params.k has the key 1 of type int; JSON objects take only string keys",
            "non-string key @ params.k",
        ),
        ({"when": object()}, "params.when is a object, which JSON cannot store", "not JSON @ params.when"),
    ],
)
def test_check_json_refuses_what_a_round_trip_would_change(data: Any, message: str, error: str) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        codec.check_json(data, "params")
    assert str(caught.value) == message
    assert caught.value.errors == [error]


@pytest.mark.parametrize("type_", [Any, dict[str, Any], list[Any]])
def test_undeclared_sets_are_refused_not_silently_turned_into_lists(type_: Any) -> None:
    data: Any = [{1, 2}] if type_ == list[Any] else {"a": {1, 2}}
    spec = jobkit.Registry().job(name="t")(_echo_as(type_))
    with pytest.raises(jobkit.ValidationError, match=r"is a set, which JSON cannot store"):
        spec.now(data)


def _echo_as(type_: Any) -> Any:
    def echo(params, ctx):  # type: ignore[no-untyped-def]
        return params

    echo.__annotations__ = {"params": type_, "return": type_}
    return echo


@pytest.mark.parametrize(
    ("type_", "value", "stored"),
    [
        (set[int], {3}, [3]),
        (frozenset[str], frozenset({"a"}), ["a"]),
        (Inner, Inner("n", {"t"}), {"name": "n", "tags": ["t"]}),
        (dict[str, set[int]], {"k": {1}}, {"k": [1]}),
    ],
)
def test_declared_sets_round_trip_as_lists(type_: Any, value: Any, stored: Any) -> None:
    text = codec.encode(codec.unstructure(value, type_), what="params")
    assert json.loads(text) == stored
    assert codec.structure(codec.decode(text), type_, what="params") == value


def test_declared_set_job_round_trips_through_a_store() -> None:
    spec = jobkit.Registry().job(name="sets")(_echo_as(set[int]))
    store = jobkit.MemoryStore()
    result = spec.now({3, 1, 2}, store=store)
    assert result.unwrap() == {1, 2, 3}
    record = store.get(result.job_id)
    assert record is not None
    assert sorted(json.loads(record.params)) == [1, 2, 3]
    assert sorted(json.loads(record.result or "")) == [1, 2, 3]
    assert spec.now([1, 1, 2]).unwrap() == {1, 2}  # a list is accepted for a declared set


def test_declared_non_string_keys_are_refused_at_encoding() -> None:
    spec = jobkit.Registry().job(name="intkeys")(_echo_as(dict[int, int]))
    with pytest.raises(jobkit.ValidationError, match="params has the key 1 of type int; JSON objects take only string"):
        spec.now({1: 2})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(deadline=None)
@given(json_values)
def test_any_json_value_round_trips_unchanged(value: Any) -> None:
    text = codec.encode(value, what="params")
    assert codec.decode(text) == value
    assert codec.structure(value, Any, what="params") is value


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert codec.encode({"a": [1, "é"]}, what="params") == '{"a":[1,"é"]}'


# -- size cap --------------------------------------------------------------------------
def test_default_cap_is_one_mebibyte() -> None:
    assert codec.DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024


def test_payload_at_the_cap_passes_and_one_byte_over_fails() -> None:
    limit = codec.DEFAULT_MAX_PAYLOAD_BYTES
    assert len(codec.encode("x" * (limit - 2), what="params")) == limit  # two quotes
    with pytest.raises(jobkit.PayloadTooLarge) as caught:
        codec.encode("x" * (limit - 1), what="params")
    err = caught.value
    assert (err.size, err.limit) == (limit + 1, limit)
    assert str(err) == "params encode to 1,048,577 bytes, over the limit of 1,048,576 (max_payload_bytes)"
    assert isinstance(err, jobkit.ValidationError)
    assert err.errors == [str(err)]


def test_cap_counts_bytes_not_characters() -> None:
    # 600 two-byte characters are 1,202 bytes with the quotes: over a cap of 1,000
    with pytest.raises(jobkit.PayloadTooLarge) as caught:
        codec.encode("é" * 600, what="result", limit=1_000)
    assert (caught.value.size, caught.value.limit) == (1_202, 1_000)
    assert str(caught.value).startswith("result encode to 1,202 bytes, over the limit of 1,000")
    assert codec.encode("é" * 499, what="result", limit=1_000)  # 1,000 bytes exactly


def test_custom_cap_on_a_registry_applies_to_params() -> None:
    registry = jobkit.Registry(max_payload_bytes=100)
    spec = registry.job(name="capped")(_echo_as(str))
    store = jobkit.MemoryStore()
    with pytest.raises(jobkit.PayloadTooLarge) as caught:
        spec.later("y" * 200, store)
    assert (caught.value.size, caught.value.limit) == (202, 100)
    assert "over the limit of 100" in str(caught.value)
    assert sum(store.counts().values()) == 0
    assert spec.now("y" * 98).ok


def test_oversized_result_fails_the_job_with_the_sizes() -> None:
    registry = jobkit.Registry(max_payload_bytes=100)

    @registry.job(name="grow")
    def grow(params: int, ctx: jobkit.Context) -> str:
        return "z" * params

    store = jobkit.MemoryStore()
    result = grow.now(500, store=store)
    assert not result.ok
    assert result.error == "ValidationError: result encode to 502 bytes, over the limit of 100 (max_payload_bytes)"
    record = store.get(result.job_id)
    assert record is not None
    assert record.status is jobkit.JobStatus.FAILED
    assert record.result is None
