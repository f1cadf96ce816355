"""The one cattrs converter and the rules for turning values into stored JSON.

Params and results cross the process boundary as JSON text, so what is stored must
survive a round trip unchanged: no NaN or infinity, no sets or bytes, only string keys.
Primitives are structured strictly (``"3"`` is not an int, ``True`` is not an int) and
unknown fields are refused, so a typo in params fails at enqueue time, not in a worker.
"""

from __future__ import annotations

import collections.abc
import functools
import json
import json.scanner
import math
import sys
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from jobkit.errors import PayloadTooLarge, ValidationError

DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20


def _strict_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"expected int, got {type(value).__name__} {value!r}")


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected float, got {type(value).__name__} {value!r}")


def _strict_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected str, got {type(value).__name__} {value!r}")


def _strict_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected bool, got {type(value).__name__} {value!r}")


def _strict_none(value: Any, _: type) -> None:
    if value is None:
        return
    raise TypeError(f"expected None, got {type(value).__name__} {value!r}")


if TYPE_CHECKING:  # imported with the first params or result checked: a process that checks none starts without it
    import cattrs


def make_converter() -> cattrs.Converter:
    """Build jobkit's converter: strict primitives, unknown fields refused."""
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    # A handler declared ``-> None``: cattrs 26 no longer structures NoneType by itself.
    converter.register_structure_hook(type(None), _strict_none)
    # Declared sets (``set[int]``) travel as JSON lists and come back as sets. Only a
    # parametrised type counts as declared: a value under ``Any`` is unstructured by its
    # runtime class, the bare ``set``, and must be refused rather than silently become a list.
    converter.register_unstructure_hook_factory(_is_declared_set, _set_as_list)
    return converter


def _is_declared_set(type_: Any) -> bool:
    origin = typing.get_origin(type_)
    return isinstance(origin, type) and issubclass(origin, collections.abc.Set) and bool(typing.get_args(type_))


def _set_as_list(type_: Any, converter: cattrs.Converter) -> Callable[[Any], list[Any]]:
    (item_type,) = typing.get_args(type_)
    item = converter.get_unstructure_hook(item_type)
    return lambda value: [item(v) for v in value]


@functools.cache
def _converter() -> cattrs.Converter:
    """The one converter, made when first needed (cattrs takes some 20 ms to import)."""
    return make_converter()


def structure(data: Any, type_: Any, *, what: str) -> Any:
    """Turn *data* into an instance of *type_*, or raise ValidationError naming the field.

    An instance of an attrs class or dataclass is taken through its unstructured form,
    so it is checked exactly like the plain data it stands for.
    """
    if type_ is Any:
        check_json(data, what)
        return data
    try:
        if _is_instance(data, type_):
            return _converter().structure(_converter().unstructure(data), type_)
        return _converter().structure(data, type_)
    except RecursionError as exc:
        raise too_deep(what, data) from exc
    except Exception as exc:
        import cattrs

        errors = cattrs.transform_error(exc, path=what, format_exception=_describe)
        raise ValidationError(f"invalid {what}: " + "; ".join(errors), errors=errors, value=data) from exc


def _describe(exc: BaseException, type_: Any) -> str:
    """cattrs' text for one problem, with its least helpful case said plainly."""
    text = str(exc)
    # cattrs met a non-mapping where an attrs class or dataclass was expected: it calls
    # .keys() on the value, or tests `name in value`.
    if (isinstance(exc, AttributeError) and "has no attribute 'keys'" in text) or (
        isinstance(exc, TypeError) and text.startswith("argument of type '")
    ):
        return f"expected an object of fields (a dict), got {text.split(chr(39))[1]}"
    import cattrs

    return cattrs.v.format_exception(exc, type_)


def unstructure(value: Any, type_: Any = None, *, what: str = "value") -> Any:
    """Turn a typed value into plain data (dicts, lists, str, int, float, bool, None)."""
    try:
        return _converter().unstructure(value, unstructure_as=type_)
    except RecursionError as exc:  # a field under Any nested thousands deep
        raise too_deep(what, value) from exc


def _is_instance(value: Any, type_: Any) -> bool:
    """Whether *value* is an instance of the attrs class or dataclass *type_*."""
    # A parameterised generic (list[int]) passes isinstance(_, type) on Python 3.10 but
    # cannot be the second argument of isinstance.
    if typing.get_origin(type_) is not None or not isinstance(type_, type):
        return False
    if not (hasattr(type_, "__attrs_attrs__") or hasattr(type_, "__dataclass_fields__")):
        return False
    return isinstance(value, type_)


def too_deep(what: str, data: Any) -> ValidationError:
    """The error for a value nested deeper than Python can walk (a RecursionError)."""
    return ValidationError(
        f"{what} nest too deeply to store (more than about {sys.getrecursionlimit()} levels); flatten them",
        errors=[f"nested too deeply @ {what}"],
        value=data,
    )


def check_json(data: Any, path: str) -> None:
    """Refuse anything a JSON round trip would change, naming where it is."""
    try:
        _check_json(data, path)
    except RecursionError as exc:
        raise too_deep(path, data) from exc


def _check_json(data: Any, path: str) -> None:
    if data is None or isinstance(data, (str, bool, int)):
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise ValidationError(
                f"{path} is {data!r}; JSON cannot store NaN or infinity", errors=[f"not finite @ {path}"], value=data
            )
        return
    if isinstance(data, (list, tuple)):
        for i, item in enumerate(data):
            _check_json(item, f"{path}[{i}]")
        return
    if isinstance(data, dict):
        for key, item in data.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON objects take only string keys",
                    errors=[f"non-string key @ {path}"],
                    value=data,
                )
            _check_json(item, f"{path}.{key}")
        return
    hint = "; use a list, or declare the field as set[...]" if isinstance(data, (set, frozenset)) else ""
    if isinstance(data, (bytes, bytearray)):
        hint = "; encode it as text (e.g. base64) first"
    raise ValidationError(
        f"{path} is a {type(data).__name__}, which JSON cannot store{hint}",
        errors=[f"not JSON @ {path}"],
        value=data,
    )


_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=True, separators=(",", ":"))
_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # what _ENCODER does to a str
_encode_str_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii  # and _ASCII_ENCODER

Surrogates = Literal["refuse", "escape"]
"""What :func:`encode` does with text that UTF-8 cannot hold (a lone surrogate, as
``os.fsdecode`` makes of a file name that is not UTF-8): refuse it with a
ValidationError naming where it is, or write it as a JSON escape (``\\udce9``), which
decodes back to the same text."""


def canonical_key(encoded: str) -> str:
    """The unique key of params whose JSON is *encoded*: a SHA-256 of their canonical JSON (keys sorted).

    Equal params give equal keys however their mappings were ordered; the digest keeps
    the key (and the index holding it) small however large the params are.
    """
    data = json.loads(encoded)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    import hashlib  # unique jobs only: OpenSSL's library takes 2 ms to load

    return "params:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def encode(data: Any, *, what: str, limit: int = DEFAULT_MAX_PAYLOAD_BYTES, surrogates: Surrogates = "refuse") -> str:
    """Check plain *data* and encode it as compact JSON text no larger than *limit* bytes.

    The text is always valid UTF-8, so every store can hold it; see :data:`Surrogates`.
    """
    kind = type(data)
    try:
        if kind is int or kind is bool:  # the common plain params, without the encoder's overhead
            text = "true" if data is True else "false" if data is False else int.__repr__(data)
        elif kind is str:
            text = _encode_str(data)
        else:
            check_json(data, what)
            text = _ENCODER.encode(data)
    except RecursionError as exc:
        raise too_deep(what, data) from exc
    except ValidationError:
        raise
    except ValueError as exc:  # an int past Python's limit for int-to-text conversion
        path = _find(data, what, _too_long_int) or what
        raise ValidationError(
            f"{path} is an int too long to write as text ({exc}); store it as a str, or split it",
            errors=[f"int too long @ {path}"],
            value=data,
        ) from exc
    if not text.isascii() and not _is_utf8(text):
        if surrogates == "refuse":
            path = _find(data, what, _has_surrogate) or what
            raise ValidationError(
                f"{path} holds text that UTF-8 cannot encode (a lone surrogate, as os.fsdecode makes of a "
                "file name that is not UTF-8); pass such names as bytes encoded to text (e.g. base64 of "
                "os.fsencode(name)), or decode them with errors='replace'",
                errors=[f"not UTF-8 @ {path}"],
                value=data,
            )
        text = _encode_str_ascii(data) if kind is str else _ASCII_ENCODER.encode(data)
    if len(text) * 4 > limit:  # cheap test first: a str of n chars is at most 4n bytes
        size = len(text.encode())
        if size > limit:
            raise PayloadTooLarge(
                f"{what} encode to {size:,} bytes, over the limit of {limit:,} (max_payload_bytes)",
                size=size,
                limit=limit,
                value=data,
            )
    return text


def storable_text(text: str) -> str:
    """*text* as every store can hold it: lone surrogates and NULs escaped (``\\udce9``, ``\\x00``), the rest unchanged.

    For text that is read, not decoded back (error text, tracebacks, progress messages).
    A NUL (U+0000) becomes the four characters ``\\x00`` on every store alike, as
    PostgreSQL's text cannot hold one.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii() or _is_utf8(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(value: str, *, what: str) -> str:
    """Refuse raw text no store can hold, naming it as *what*: a NUL, or a lone surrogate.

    For text a caller gives that is stored as it is, not as JSON (a correlation id, a
    job or schedule name). JSON params and results need no such check: JSON writes a
    NUL as ``\\u0000``.
    """
    if "\x00" in value:
        raise ValidationError(
            f"{what} holds a NUL character (U+0000), which PostgreSQL cannot store; remove it",
            errors=[f"NUL @ {what}"],
            value=value,
        )
    encode(value, what=what)  # refuses text that UTF-8 cannot hold
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and not value.isascii() and not _is_utf8(value)


def _too_long_int(value: Any) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    try:
        int.__repr__(value)
    except ValueError:
        return True
    return False


def _find(data: Any, path: str, bad: Callable[[Any], bool]) -> str | None:
    """The path of the first value (or key) in *data* that is *bad*; a loop, as *data* may nest deep."""
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if bad(value):
            return where
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if bad(key):
                    return f"{where} (the key {key!r})"
                stack.append((item, f"{where}.{key}"))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


# The C scanner behind json.loads, without its per-call set-up (typeshed mistypes its argument).
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def decode(text: str) -> Any:
    """Read stored JSON text back into plain data; ValidationError when it is not JSON."""
    try:
        # Compact JSON, as jobkit writes it, in one pass of the scanner; anything else
        # (white space around it, trailing text, an error to explain) takes json.loads.
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, TypeError):
        pass
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"not valid JSON ({exc})", value=text) from exc
