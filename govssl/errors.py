"""The one exception family of govssl. The CLI maps each class to its exit code (DESIGN.md)."""

from __future__ import annotations

__all__ = [
    "GovsslError",
    "ConfigError",
    "DataError",
    "PolicyError",
    "IntegrityError",
    "StoreError",
    "TemplateError",
]


class GovsslError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this reaches it."""

    exit_code = 4

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class ConfigError(GovsslError):
    """An audit plan or a command line option is invalid. Collects every problem before raising."""

    exit_code = 2


class DataError(GovsslError):
    """A data file is missing, unreadable, empty, or lacks a column the plan names."""

    exit_code = 2


class PolicyError(GovsslError):
    """A policy pack is invalid (unknown check or metric, bad threshold, ...)."""

    exit_code = 2


class TemplateError(GovsslError):
    """A document template is invalid or refers to something that does not exist."""

    exit_code = 2


class IntegrityError(GovsslError):
    """A hash, signature, manifest or the audit store's chain does not verify."""

    exit_code = 3


class StoreError(GovsslError):
    """The audit store cannot be opened or written (bad URL, unreachable server)."""

    exit_code = 2
