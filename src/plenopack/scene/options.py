"""Loader options given as text (``key=value`` on the command line) and checked against a loader's signature."""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from plenopack.errors import PlenopackError

NOT_OPTIONS = ("root", "max_side")  # loader parameters that load_scene fills itself


def parse_scene_options(items: Sequence[str]) -> dict:
    """``["test_every=4", "capture_kind=turntable", "background=[0,0,0]"]`` -> a dict of options.

    Values are parsed as JSON when they are JSON (numbers, true/false/null, lists), else kept as strings.
    """
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise PlenopackError(f"scene option {item!r} is not key=value")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def accepted_options(loader: Callable) -> dict[str, inspect.Parameter]:
    """The options a loader takes (its keyword parameters other than `NOT_OPTIONS`)."""
    return {name: p for name, p in inspect.signature(loader).parameters.items() if name not in NOT_OPTIONS}


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list) or hint in (tuple, list):
        return isinstance(value, (tuple, list))
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_options(loader: Callable, fmt: str, options: dict, where: str | Path) -> None:
    """One clear error for an unknown option (listing the accepted ones) or a value of the wrong type."""
    accepted = accepted_options(loader)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise PlenopackError(f"unknown option(s) for the {fmt} loader: {', '.join(unknown)} "
                             f"(accepted: {', '.join(accepted)})", where)
    hints = typing.get_type_hints(loader)
    for name, value in options.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            shown = str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__
            raise PlenopackError(f"option {name}={value!r} of the {fmt} loader must be {shown}", where)
