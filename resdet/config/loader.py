"""Strict YAML -> dataclass mapping: `_base_` inheritance, dotted overrides, typed checks.

Every error is a `ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that reads numbers as a person writes them (`1e-3` is a float, as in YAML
    1.2, not the string YAML 1.1 makes of it) and refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping with `yaml.safe_load` (no `!!python/` tags), following `_base_`."""
    return _read_with_bases(Path(path), ())


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `_base_` cycle: {' -> '.join(str(p) for p in chain + (path,))}")
    if not path.is_file():
        where = f" (the `_base_` of {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}")
    try:
        data = _load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:  # python tags included: only safe YAML is read
        raise ConfigError(f"{path}: not valid safe YAML: {' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return _tag(data, path)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: `_base_` must be a file name or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, _read_with_bases(path.parent / base, chain + (path,)))
    return merge(merged, _tag(data, path))


class _Sourced(dict):
    """A mapping that remembers which file it came from (for error messages)."""

    source: str = "<config>"


def _tag(data: Any, path: Path) -> Any:
    if isinstance(data, dict):
        out = _Sourced({k: _tag(v, path) for k, v in data.items()})
        out.source = str(path)
        return out
    if isinstance(data, list):
        return [_tag(v, path) for v in data]
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in `over` replaces."""
    out = _Sourced(base)
    out.source = getattr(over, "source", getattr(base, "source", "<config>"))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; a value is read as safe YAML (`3`, `0.1`, `[1,2]`, `null`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = _load_yaml(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: override {key}: cannot parse {raw!r}: {e}") from None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = _Sourced()
                node[p].source = "command line"
            node = node[p]
        nested = isinstance(value, (dict, list))
        node[parts[-1]] = _tag(value, Path("command line")) if nested else value
    return data


def from_dict(cls: type[T], data: Any, key: str = "", source: str = "<config>") -> T:
    """Build dataclass `cls` from a mapping, refusing unknown keys and values of the wrong type.

    A key listed in the class attribute `RENAMED` (`{old name: where it went}`) is refused with a
    message naming its new place.
    """
    source = getattr(data, "source", source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {key or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        name = f"{key}.{unknown[0]}" if key else unknown[0]
        renamed = getattr(cls, "RENAMED", {}).get(unknown[0])
        if renamed:
            raise ConfigError(f"{source}: key {name!r} is now {renamed}")
        raise ConfigError(
            f"{source}: unknown key {name!r} (allowed under "
            f"{key or 'the top level'}: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{key}.{name}" if key else name, source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {key or 'config'}: {e}") from None


def _convert(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key}: {value!r} matches none of {_name(tp)}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list ({_name(tp)}), got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {value!r}")
            return tuple(
                _convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value))
            )
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        return {k: _convert(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {key}: unsupported config type {_name(tp)}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dicts/lists, ready for `yaml.safe_dump`."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_typed(
    cls: type[T],
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    adjust: Callable[[T, dict[str, Any], list[str], str], Any] | None = None,
) -> T:
    """Read `path` (following `_base_`) into dataclass `cls`, then apply `key.sub=value` overrides.

    The file alone must be valid, so an error raised only with the overrides is blamed on them.
    `adjust(file_cfg, data, overridden_keys, source)` may edit the mapping `data` after the
    overrides, before it is checked (e.g. `resdet.config.solver.scale_schedule`).
    `cls` must have a `source` field (init=False) that receives the path.
    """
    data = read_yaml(path)
    cfg = from_dict(cls, data, source=str(path))
    if overrides:
        data = apply_overrides(data, list(overrides), str(path))
        if adjust is not None:
            adjust(cfg, data, [item.split("=", 1)[0].strip() for item in overrides], str(path))
        try:
            cfg = from_dict(cls, data, source=str(path))
        except ConfigError as e:
            raise ConfigError(f"command-line override on {path}: {e}") from None
    cfg.source = str(path)
    return cfg


def typed_from_dict(cls: type[T], data: dict, source: str = "<dict>") -> T:
    """Build dataclass `cls` from a plain mapping (e.g. the one stored in a checkpoint)."""
    cfg = from_dict(cls, data, source=source)
    cfg.source = source
    return cfg


def save_typed(cfg: Any, path: str | Path) -> None:
    """Write a resolved config as YAML that `load_typed` reads back to an equal dataclass."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
