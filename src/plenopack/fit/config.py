"""`FitConfig`: every hyperparameter of a fit, range-checked at load, and the named presets that fill it.

Presets live in ``plenopack/presets/<name>.json`` (svox2-style: each holds every setting it changes from the
defaults below); the CLI overrides any field with ``--set key=value``.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from plenopack.errors import PlenopackError

PRUNE_MODES = ("sigma", "weight", "none")
BACKGROUNDS = ("auto", "white", "black", "random")
BACKGROUND_MODELS = ("none", "msi")
MSI_FRAMES = ("auto", "world", "turntable")
MAX_RESOLUTION = 1024
STAGE_RATES = ("lr_sigma", "lr_sigma_final", "lr_sh", "lr_sh_final")  # one number, or one per stage


def _range(default, lo=None, hi=None, *, lo_open=False, hi_open=False, doc=""):
    """A numeric field with an allowed interval (checked by `FitConfig.validate`)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open), "doc": doc})


@dataclass
class FitConfig:
    """Every hyperparameter of a fit (see `plenopack.fit` for what each stage does).

    Units: resolutions in voxels per cube side; ``step_size`` and ``render_step_size`` in voxels; ``near_clip``
    and ``msi_far`` in unit-cube units (the cube [-1, 1]^3 has side 2); learning rates per RMSProp step.
    """

    reso: list[int] = field(default_factory=lambda: [64, 128])  # resolution of each stage
    steps: list[int] = field(default_factory=lambda: [1000, 2000])  # optimisation steps of each stage
    batch_rays: int = _range(5000, 1, 10_000_000)
    sh_degree: int = _range(2, 0, 3)
    init_density: float = _range(0.1, -1e4, 1e4)
    # the four rates below: one number (log-linear decay over the whole fit) or one per stage (each stage decays
    # from its start rate to its final rate over its own steps)
    lr_sigma: float | list[float] = _range(30.0, 0.0, None, lo_open=True)
    lr_sigma_final: float | list[float] = _range(30.0, 0.0, None, lo_open=True)
    lr_sigma_delay_steps: int = _range(0, 0, None, doc="svox2's warm-up: lr scaled by delay_mult rising to 1 (sine)")
    lr_sigma_delay_mult: float = _range(1.0, 0.0, 1.0, lo_open=True)
    lr_sh: float | list[float] = _range(1e-2, 0.0, None, lo_open=True)
    lr_sh_final: float | list[float] = _range(5e-6, 0.0, None, lo_open=True)
    lr_sh_decay_steps: int = _range(0, 0, None, doc="0: decay over the whole fit (rates given per stage: unused)")
    rmsprop_beta: float = _range(0.95, 0.0, 1.0, hi_open=True)
    lambda_tv: float = _range(5e-5, 0.0, 1e3)
    lambda_tv_sh: float = _range(5e-3, 0.0, 1e3)
    tv_fraction: float = _range(0.01, 0.0, 1.0, lo_open=True)
    tv_halve_on_upsample: bool = True
    lambda_sparsity: float = _range(1e-10, 0.0, 1e3)
    lambda_beta: float = _range(1e-5, 0.0, 1e3)
    lambda_mask: float = _range(0.0, 0.0, 1e3, doc="opacity floor on object pixels of full-frame fits")
    step_size: float = _range(0.5, 0.01, 4.0, doc="voxels per ray-marching step in training")
    render_step_size: float = _range(0.5, 0.01, 4.0, doc="voxels per ray-marching step when the fit is scored "
                                     "(eval): the same field, integrated more finely than a coarse training step")
    stop_thresh: float = _range(1e-4, 0.0, 1.0, lo_open=True, hi_open=True)
    prune: str = "sigma"
    prune_threshold: float = _range(20.0, 0.0, None)
    dilate: int = _range(2, 0, 16)
    prune_final: bool = False
    weight_prune_stride: int = _range(1, 1, None, doc="render every n-th training pixel for weight pruning")
    background: str = "auto"  # auto = random where masks exist, else white
    use_masks: bool = True  # train on foreground masks (random background) where the scene has them
    foreground_fraction: float = _range(0.0, 0.0, 1.0, doc="share of each batch drawn from mask pixels")
    background_model: str = "none"  # "msi": learn svox2's multi-sphere background (trains on the raw full frames)
    msi_layers: int = _range(8, 1, 256)
    msi_height: int = _range(64, 2, 4096, doc="equirectangular rows (polar angle); columns = 2 x rows")
    msi_far: float = _range(16.0, 1.8, 1e6, doc="radius of the outermost sphere (unit-cube units)")
    msi_brightness: float = _range(0.5, 0.0, 1.0)
    msi_frame: str = "auto"  # "turntable": the room turns with the cameras; "auto": the scene's detected frame
    lr_background: float = _range(0.1, 0.0, None, lo_open=True)
    lambda_tv_background_color: float = _range(1e-3, 0.0, 1e3)
    lambda_tv_background_sigma: float = _range(1e-2, 0.0, 1e3)
    near_clip: float = _range(0.0, 0.0, 100.0, doc="rays start this far from the camera (unit-cube units)")
    occupancy_every: int = _range(50, 1, None, doc="steps between rebuilds of the empty-space field")
    log_every: int = _range(50, 1, None)
    seed: int = _range(0, 0, 2 ** 63 - 1)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise PlenopackError naming the first field outside its range or of the wrong type."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "range" not in f.metadata:
                continue
            if f.name in STAGE_RATES and isinstance(value, list):
                if not isinstance(self.reso, list) or len(value) != len(self.reso):
                    raise PlenopackError(f"{f.name} must be one number or one per stage ({len(self.reso)}), "
                                         f"got {value!r}")
                for v in value:
                    _check_number(f.name, v, float, *f.metadata["range"])
            else:
                _check_number(f.name, value, f.type, *f.metadata["range"])
        for name in ("reso", "steps"):
            values = getattr(self, name)
            if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise PlenopackError(f"{name} must be a list of integers, got {values!r}")
        if not self.reso or len(self.reso) != len(self.steps):
            raise PlenopackError(f"reso {self.reso} and steps {self.steps} must be lists of equal length")
        if any(r < 4 or r > MAX_RESOLUTION for r in self.reso) or any(b <= a for a, b in zip(self.reso, self.reso[1:])):
            raise PlenopackError(f"resolutions must increase and lie in 4..{MAX_RESOLUTION}, got {self.reso}")
        if any(s < 0 for s in self.steps):
            raise PlenopackError(f"steps must be non-negative, got {self.steps}")
        for name, value, allowed in (("prune", self.prune, PRUNE_MODES), ("background", self.background, BACKGROUNDS),
                                     ("background_model", self.background_model, BACKGROUND_MODELS),
                                     ("msi_frame", self.msi_frame, MSI_FRAMES)):
            if value not in allowed:
                raise PlenopackError(f"unknown {name} {value!r} (expected {', '.join(allowed)})")
        for name in ("tv_halve_on_upsample", "prune_final", "use_masks"):
            if not isinstance(getattr(self, name), bool):
                raise PlenopackError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FitConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PlenopackError(f"unknown fit option(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes) -> "FitConfig":
        """A validated copy with some fields changed."""
        return FitConfig.from_dict({**self.to_dict(), **changes})

    def config_hash(self) -> str:
        """Stable hash of every setting that changes the result (16 hex digits)."""
        d = self.to_dict()
        d.pop("log_every")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def total_steps(self) -> int:
        return int(sum(self.steps))

    def learning_rates(self, step: int, horizon: int) -> tuple[float, float]:
        """(density, SH) learning rates at ``step`` (counted over the whole fit). Rates given as numbers decay
        log-linearly over ``horizon`` steps; rates given per stage decay over the steps of the stage ``step``
        lies in. svox2's warm-up (``lr_sigma_delay_steps``) scales the density rate from the fit's start."""
        stage, local, length = None, step, horizon
        if any(isinstance(getattr(self, name), list) for name in STAGE_RATES):
            ends = list(itertools.accumulate(self.steps))
            stage = min(bisect.bisect_right(ends, step), len(ends) - 1)
            local, length = step - (ends[stage] - self.steps[stage]), self.steps[stage]

        def rate(name: str) -> float:
            value = getattr(self, name)
            return float(value[stage] if isinstance(value, list) else value)

        warm_up = _warm_up(step, self.lr_sigma_delay_steps, self.lr_sigma_delay_mult)
        return (warm_up * learning_rate(rate("lr_sigma"), rate("lr_sigma_final"), local, length),
                learning_rate(rate("lr_sh"), rate("lr_sh_final"), local, length))


def learning_rate(start: float, end: float, step: int, horizon: int) -> float:
    """Log-linear decay from start to end over ``horizon`` steps (svox2's warm-up: `FitConfig.learning_rates`)."""
    t = min(step / horizon, 1.0) if horizon > 0 else 0.0
    return float(start if start == end else math.exp(math.log(start) * (1 - t) + math.log(end) * t))


def _warm_up(step: int, delay_steps: int, delay_mult: float) -> float:
    """svox2's warm-up factor: delay_mult rising to 1 (a quarter sine) over ``delay_steps``; 1 without them."""
    if delay_steps <= 0:
        return 1.0
    return delay_mult + (1 - delay_mult) * math.sin(0.5 * math.pi * min(step / delay_steps, 1.0))


def _check_number(name: str, value, kind, lo, hi, lo_open, hi_open) -> None:
    integral = kind in (int, "int")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integral and not isinstance(value, int)):
        raise PlenopackError(f"{name} must be {'an integer' if integral else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise PlenopackError(f"{name} must be finite, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        interval = f"{left}{'-inf' if lo is None else lo:g}, {'inf' if hi is None else f'{hi:g}'}{right}"
        raise PlenopackError(f"{name} must lie in {interval}, got {value!r}")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("plenopack.presets").iterdir() if p.name.endswith(".json"))


def preset_values(name: str) -> dict[str, Any]:
    """The raw settings of a named preset (without its description)."""
    path = resources.files("plenopack.presets") / f"{name}.json"
    if not path.is_file():
        raise PlenopackError(f"unknown preset {name!r} (available: {', '.join(preset_names())})")
    values = json.loads(path.read_text())
    values.pop("description", None)
    return values


def load_preset(name: str, **overrides) -> FitConfig:
    """The named preset (fast, blender, llff, co3d, ...) with any fields overridden (None = keep)."""
    values = preset_values(name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FitConfig.from_dict(values)
