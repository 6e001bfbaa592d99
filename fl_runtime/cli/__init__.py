"""The ``fl`` command line: one subcommand per component.

Subcommands are imported lazily, so ``fl simulate`` never pays for importing
pyspark and ``fl --help`` stays fast on a Raspberry Pi.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

# name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "simulate": "fl_runtime.cli.simulate:command",
    "bench": "fl_runtime.cli.bench:command",
    "config": "fl_runtime.cli.config_cmd:command",
    "artifacts": "fl_runtime.cli.artifacts:command",
    "topics": "fl_runtime.cli.topics:command",
    "sensor": "fl_runtime.cli.sensor:command",
    "bridge": "fl_runtime.cli.bridge:command",
    "detect": "fl_runtime.cli.detect:command",
    "fog": "fl_runtime.cli.fog:command",
    "aggregate": "fl_runtime.cli.aggregate:command",
    "monitor": "fl_runtime.cli.monitor:command",
    "dashboard": "fl_runtime.cli.dashboard:command",
    "report": "fl_runtime.cli.report:command",
    "status": "fl_runtime.cli.status:command",
    "anomalies": "fl_runtime.cli.anomalies:command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name in COMMANDS if _module_exists(COMMANDS[name])]
        return sorted(set(available) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":", maxsplit=1)[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fl-runtime", prog_name="fl")
def main() -> None:
    """fedge: federated anomaly detection across edge, fog and cloud."""
