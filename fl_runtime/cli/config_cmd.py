"""``fl config``: show, check and document the configuration."""

from __future__ import annotations

import click

from fl_runtime.cli._common import config_option, friendly_errors, load
from fl_runtime.config import reference_markdown


@click.group("config")
def command() -> None:
    """Show, check and document the configuration."""


@command.command("show")
@click.option("--sources", is_flag=True, help="Comment each value with where it came from.")
@config_option
@friendly_errors
def show(config_path: str | None, sources: bool) -> None:
    """Print the effective configuration as TOML."""
    cfg = load(config_path)
    text = cfg.to_toml()
    if sources:
        from fl_runtime.config import SETTINGS

        lines = []
        for line in text.splitlines():
            key = line.split(" = ")[0] if " = " in line else None
            match = next((s for s in SETTINGS if s.key == key and s.path.endswith(key)), None)
            lines.append(f"{line}  # {cfg.sources[match.name]}" if key and match else line)
        text = "\n".join(lines)
    click.echo(text)


@command.command("check")
@config_option
@friendly_errors
def check(config_path: str | None) -> None:
    """Validate the configuration; exit 1 naming the bad key if it is wrong."""
    load(config_path)
    click.echo("configuration OK")


@command.command("docs")
def docs() -> None:
    """Print the configuration reference as a Markdown table."""
    click.echo(reference_markdown())
