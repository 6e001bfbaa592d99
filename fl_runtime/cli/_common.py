"""Helpers shared by the subcommands: config loading and error reporting."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from fl_runtime.config import Config, load_config
from fl_runtime.errors import FLError

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file (default: $FL_CONFIG or /etc/fl/fl.toml; FL_* env vars override).",
)


def load(config_path: str | None) -> Config:
    return load_config(config_path)


def friendly_errors(func: F) -> F:
    """Turn our own errors into a one-line message and exit status 1 (click's usage
    errors exit 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FLError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def emit_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=_default, allow_nan=False)
    sys.stdout.write("\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def progress(message: str) -> None:
    """Progress for people goes to stderr, so stdout stays parseable."""
    click.echo(message, err=True)
