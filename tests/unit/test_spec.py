"""JobSpec and Registry: names, types from annotations, sync and async handlers, duplicates."""

import dataclasses
import math
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.spec import JobSpec, spec_from_function

jobs = jobkit.Registry()


@attrs.frozen
class Resize:
    url: str
    width: int = 100


@attrs.frozen
class Resized:
    path: str


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@jobs.job(max_attempts=5)
def resize(params: Resize, ctx: jobkit.Context) -> Resized:
    return Resized(path=f"thumbs/{params.width}.png")


@jobs.job(name="points.sum")
async def add_point(params: Point, ctx: jobkit.Context) -> int:
    return params.x + params.y


def test_default_name_is_module_colon_qualname() -> None:
    assert resize.name == f"{__name__}:resize"
    assert resize.name == "tests.unit.test_spec:resize"


def test_nested_function_name_uses_its_qualname() -> None:
    registry = jobkit.Registry()

    @registry.job()
    def inner(params: int, ctx: jobkit.Context) -> int:
        return params

    assert inner.name == f"{__name__}:test_nested_function_name_uses_its_qualname.<locals>.inner"
    assert registry.get(inner.name) is inner


def test_explicit_name_and_options_are_kept() -> None:
    assert add_point.name == "points.sum"
    assert add_point.max_attempts == 3
    assert resize.max_attempts == 5
    assert resize.timeout is None
    assert resize.retry_backoff == 2.0


def test_job_returns_a_frozen_spec() -> None:
    assert isinstance(resize, JobSpec)
    assert resize.fn.__name__ == "resize"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resize.name = "other"  # type: ignore[misc]


def test_params_and_result_types_come_from_annotations() -> None:
    assert resize.params_type is Resize
    assert resize.result_type is Resized
    assert add_point.params_type is Point
    assert add_point.result_type is int


@pytest.mark.parametrize(
    ("params_type", "result_type"),
    [(int, str), (list[int], dict[str, float]), (dict[str, list[str]], list[Point]), (set[int], frozenset[str])],
)
def test_generic_annotations_are_read_as_written(params_type: Any, result_type: Any) -> None:
    def handler(params, ctx):  # type: ignore[no-untyped-def]
        return None

    handler.__annotations__ = {"params": params_type, "return": result_type}
    spec = spec_from_function(handler)
    assert spec.params_type == params_type
    assert spec.result_type == result_type


def test_missing_annotations_mean_any() -> None:
    def handler(params, ctx):  # type: ignore[no-untyped-def]
        return params

    spec = spec_from_function(handler)
    assert spec.params_type is Any
    assert spec.result_type is Any


def test_return_none_annotation_means_none_type() -> None:
    def handler(params: int, ctx: jobkit.Context) -> None:
        return None

    assert spec_from_function(handler).result_type is type(None)


def test_handler_must_take_params_and_ctx() -> None:
    def one(params: int) -> int:
        return params

    with pytest.raises(jobkit.ValidationError, match=r"must take exactly \(params, ctx\), not 1 parameters"):
        jobkit.Registry().job()(one)  # type: ignore[arg-type]


def test_unresolvable_annotation_is_a_clear_error() -> None:
    def handler(params: "NoSuchType", ctx: jobkit.Context) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 1

    with pytest.raises(jobkit.ValidationError, match=r"cannot read the type hints of .*handler.*NoSuchType"):
        spec_from_function(handler)


def test_sync_and_async_handlers_are_told_apart() -> None:
    assert resize.is_async is False
    assert add_point.is_async is True


def test_sync_and_async_handlers_both_run_now() -> None:
    assert resize.now({"url": "a.png", "width": 7}).unwrap() == Resized("thumbs/7.png")
    assert add_point.now(Point(2, 3)).unwrap() == 5
    assert add_point.now({"x": 4, "y": 5}).unwrap() == 9


def test_calling_a_spec_calls_the_handler_directly() -> None:
    ctx = jobkit.Context(job_id="j", job_name=resize.name)
    assert resize(Resize("u", 3), ctx) == Resized("thumbs/3.png")


# -- Registry --------------------------------------------------------------------------
def test_registry_get_in_names() -> None:
    assert jobs.get(resize.name) is resize
    assert jobs.get("points.sum") is add_point
    assert jobs.get("nope") is None
    assert resize.name in jobs
    assert "nope" not in jobs
    assert 42 not in jobs
    assert jobs.names() == sorted(["points.sum", "tests.unit.test_spec:resize"])
    assert len(jobs) == 2
    assert set(jobs) == {resize, add_point}


def test_register_chains_and_returns_the_registry() -> None:
    registry = jobkit.Registry()
    assert registry.register(resize).register(add_point) is registry
    assert registry.names() == ["points.sum", "tests.unit.test_spec:resize"]


def test_registering_the_same_spec_again_is_harmless() -> None:
    registry = jobkit.Registry().register(resize)
    registry.register(resize)
    assert registry.names() == [resize.name]


def test_second_spec_under_a_taken_name_is_refused() -> None:
    registry = jobkit.Registry()

    @registry.job(name="dup")
    def first(params: int, ctx: jobkit.Context) -> int:
        return 1

    def second(params: int, ctx: jobkit.Context) -> int:
        return 2

    with pytest.raises(jobkit.DuplicateJobError) as caught:
        registry.job(name="dup")(second)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, jobkit.JobkitError)
    assert caught.value.name == "dup"
    assert str(caught.value) == (
        "a job named 'dup' is already registered; give one of them another name with job(name=...)"
    )
    assert registry.get("dup") is first  # the first one stays

    with pytest.raises(jobkit.DuplicateJobError):
        registry.register(spec_from_function(second, name="dup"))


def test_registries_are_independent() -> None:
    a, b = jobkit.Registry(), jobkit.Registry()
    a.register(resize)
    assert resize.name not in b
    b.register(resize)  # no global registry: the same spec may live in both
    assert b.get(resize.name) is resize


def test_registry_payload_cap_reaches_its_specs() -> None:
    registry = jobkit.Registry(max_payload_bytes=1_000)

    @registry.job()
    def small(params: str, ctx: jobkit.Context) -> str:
        return params

    assert small.max_payload_bytes == 1_000
    assert resize.max_payload_bytes == 1 << 20


# -- option validation -----------------------------------------------------------------
def _handler(params: int, ctx: jobkit.Context) -> int:
    return params


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True, None])
def test_max_attempts_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValueError, match="max_attempts must be an int of at least 1"):
        jobkit.Registry().job(max_attempts=value)(_handler)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "5", True])
def test_timeout_must_be_positive_finite_seconds(value: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be positive seconds"):
        jobkit.Registry().job(timeout=value)(_handler)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "2", None])
def test_retry_backoff_must_be_seconds_or_a_callable(value: Any) -> None:
    with pytest.raises(ValueError, match="retry_backoff must be seconds"):
        jobkit.Registry().job(retry_backoff=value)(_handler)


@pytest.mark.parametrize("value", [0, 0.0, 2, 2.5, lambda attempt: attempt * 2.0])
def test_retry_backoff_accepts_numbers_and_callables(value: Any) -> None:
    spec = jobkit.Registry().job(retry_backoff=value)(_handler)
    assert spec.retry_backoff is value


def test_failed_validation_registers_nothing() -> None:
    registry = jobkit.Registry()
    with pytest.raises(ValueError):
        registry.job(name="bad", max_attempts=0)(_handler)
    assert "bad" not in registry
