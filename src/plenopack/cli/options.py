"""Option parsing shared by the verbs: ``key=value`` lists, comma lists, and the fit configuration."""

from __future__ import annotations

import json

import typer

from plenopack.errors import PlenopackError

SCENE_OPTION_HELP = ("Loader option KEY=VALUE (JSON values) overriding what was detected, e.g. object_centric=false, "
                     "test_every=8, capture_kind=turntable, drop_blurry=false (repeatable).")


def parse_int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PlenopackError(f"{what} must be comma-separated integers, got {text!r}") from None


def parse_key_values(items: list[str], flag: str) -> dict:
    """``key=value`` pairs; values parsed as JSON when possible (numbers, lists, booleans), else strings."""
    out = {}
    for item in items:
        if "=" not in item:
            raise PlenopackError(f"{flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def scene_option_flag():
    return typer.Option([], "--scene-option", help=SCENE_OPTION_HELP)


def fit_overrides(overrides: list[str], background: str | None = None, **named) -> dict:
    """Fit settings from ``--set``, ``--background`` and the options named after a setting (``named``: FitConfig
    field -> value, None = not given), which beat ``--set``."""
    extra = parse_key_values(overrides, "--set")
    if background == "msi":
        extra["background_model"] = "msi"
    elif background is not None:
        extra["background"] = background
    extra.update({key: value for key, value in named.items() if value is not None})
    return extra


def schedule_overrides(preset: str, extra: dict, reso: str | None, steps: str | None) -> dict:
    """``--reso`` / ``--steps`` as fit settings; one ``--steps`` total is split like the preset's stages."""
    from plenopack.fit import load_preset

    base = load_preset(preset, **extra)
    reso_list = parse_int_list(reso, "--reso") or base.reso
    steps_list = parse_int_list(steps, "--steps")
    same_stages = len(base.steps) == len(reso_list)
    if steps_list is not None and len(steps_list) == 1 and len(reso_list) > 1:
        share = ([s / max(sum(base.steps), 1) for s in base.steps] if same_stages
                 else [1 / len(reso_list)] * len(reso_list))
        steps_list = [int(round(steps_list[0] * f)) for f in share]
    if steps_list is None:
        steps_list = base.steps if same_stages else [sum(base.steps) // len(reso_list)] * len(reso_list)
    return {"reso": reso_list, "steps": steps_list}
