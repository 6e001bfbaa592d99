"""The exception hierarchy of ``fl_runtime``.

Callers catch at the level they can handle::

    FLError
    ├── ConfigError          a setting is missing, malformed or out of range
    ├── ValidationError      a message or update failed validation (carries ``reason``)
    ├── ArtifactError        an artifact could not be resolved or failed its checksum
    └── ServiceError         a long-running service could not start or keep going
"""

from __future__ import annotations


class FLError(Exception):
    """Base class of every error that ``fl_runtime`` raises on purpose."""


class ConfigError(FLError):
    """A configuration value is wrong; the message names the key and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ValidationError(FLError):
    """Input failed validation. ``reason`` is a short machine-friendly code, ``detail`` prose."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ArtifactError(FLError):
    """An artifact could not be fetched, or its checksum did not match."""


class ServiceError(FLError):
    """A service could not start, or lost a dependency it cannot live without."""
