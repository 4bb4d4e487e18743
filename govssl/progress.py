"""Progress reporting without a UI dependency: the CLI plugs in rich, a library caller a no-op."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol

__all__ = ["Progress", "ProgressTask", "NullProgress"]


class ProgressTask(Protocol):
    def advance(self, steps: int = 1, **info: float | str) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> "contextmanager[ProgressTask]": ...

    def note(self, message: str) -> None: ...


class _NullTask:
    def advance(self, steps: int = 1, **info: float | str) -> None:
        pass


class NullProgress:
    """Reports nothing; the default when govssl is used as a library."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield _NullTask()

    def note(self, message: str) -> None:
        pass
