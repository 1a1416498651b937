"""Progress reporting: the library reports through a callback and prints nothing itself.

Long-running functions (`fit`, fine-tuning, `evaluate`, `build_dataset`, sweeps) take ``progress``: a callable
that receives `ProgressEvent`s, or None (silent). The command line renders them with rich
(`plenopack.cli.progress`); a notebook or a cluster job can log them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class ProgressEvent:
    """One update of a task: ``completed`` of ``total`` units done (steps, views, scenes, rows).

    ``task`` names the kind of work ("fit", "finetune", "importance", "evaluate", "build", "sweep");
    ``fields`` carries task-specific facts (stage, psnr, voxels, failed, ...); ``message`` is an optional
    line worth showing once (a finished sweep row, a failed scene).
    """

    task: str
    completed: int
    total: int
    fields: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def report(callback: ProgressCallback | None, task: str, completed: int, total: int, message: str | None = None,
           **fields: Any) -> None:
    """Send one event to ``callback`` when there is one."""
    if callback is not None:
        callback(ProgressEvent(task, int(completed), int(total), fields, message))
