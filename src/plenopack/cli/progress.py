"""Rendering the library's progress events (`plenopack.progress`) on the terminal with rich."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from plenopack.progress import ProgressEvent

# how each task's fields are shown after its bar
_FIELDS = {
    "fit": "{task.fields[stage]} psnr {task.fields[psnr]:.2f} voxels {task.fields[voxels]:,}",
    "finetune": "psnr {task.fields[psnr]:.2f}",
    "build": "failed {task.fields[failed]}  {task.fields[rate]:.0f} scenes/h  mean PSNR {task.fields[psnr]:.2f}",
}


class RichProgress:
    """A progress callback that draws one rich bar per task on stderr; a no-op when ``enabled`` is False.

    Use as a context manager around the library call: ``with RichProgress() as cb: fit(scene, config, cb)``.
    """

    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not enabled, transient=False)
        self.tasks: dict[str, int] = {}
        self.enabled = enabled

    def __enter__(self) -> "RichProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        if event.message:
            self.bar.console.print(event.message)
        extra = _FIELDS.get(event.task, "")
        try:
            text = extra.format(task=_Fields(event.fields)) if extra else ""
        except (KeyError, ValueError, TypeError):
            text = ""
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bar.add_task(event.task, total=event.total, extra=text)
        self.bar.update(self.tasks[event.task], completed=event.completed, total=event.total, extra=text)


class _Fields:
    def __init__(self, fields: dict):
        self.fields = fields
