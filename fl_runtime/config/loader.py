"""Loading, validating and documenting the configuration.

Precedence, lowest first: built-in default, the TOML file, ``FL_<NAME>``
environment variables. A bad value raises :class:`~fl_runtime.errors.ConfigError`
naming the key and what is allowed; unknown keys in the file are errors too, so
a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from fl_runtime.config.settings import (
    ENV_PREFIX,
    AggregationSection,
    Declared,
    DetectionSection,
    FogSection,
    KafkaSection,
    MqttSection,
    SensorSection,
    ServiceSection,
    Setting,
    TrainingSection,
)
from fl_runtime.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/fl/fl.toml")
CONFIG_PATH_ENV = "FL_CONFIG"
# FL_* variables that belong to tools, not to settings (a typo elsewhere is an error).
RESERVED_ENV_PREFIXES = ("FL_CONFIG", "FL_ARTIFACTS_", "FL_DASHBOARD_", "FL_LAB_", "FL_TEST_")


@dataclass(frozen=True)
class Config:
    """Validated settings in typed sections named like the TOML file's:
    ``cfg.training.learning_rate``. ``sources`` maps each canonical name to where its
    value came from (``default``, the file's path, ``env`` or ``override``)."""

    kafka: KafkaSection = field(default_factory=KafkaSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    aggregation: AggregationSection = field(default_factory=AggregationSection)
    fog: FogSection = field(default_factory=FogSection)
    detection: DetectionSection = field(default_factory=DetectionSection)
    sensor: SensorSection = field(default_factory=SensorSection)
    service: ServiceSection = field(default_factory=ServiceSection)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def value(self, setting: Setting) -> Any:
        """The value of a declared setting, for code that walks :data:`SETTINGS`."""
        return getattr(getattr(self, setting.section), setting.key)

    def replace(self, **overrides: Any) -> Config:
        """A copy with some settings changed by canonical name (``BATCH_SIZE=8``),
        validated like any other source."""
        values = {s.name: self.value(s) for s in SETTINGS}
        sources = dict(self.sources)
        for name, raw in overrides.items():
            setting = setting_named(name.upper())
            values[setting.name] = coerce(setting, raw, setting.name)
            sources[setting.name] = "override"
        return _build(values, sources)

    def to_toml(self) -> str:
        """The settings as a TOML document, grouped by section."""
        lines: list[str] = []
        for section in SECTIONS:
            lines.append(f"[{section}]")
            for s in (s for s in SETTINGS if s.section == section):
                lines.append(f"{s.key} = {_toml_value(self.value(s))}")
            lines.append("")
        return "\n".join(lines)


def _declare() -> tuple[dict[str, type], tuple[Setting, ...]]:
    """The section types (in file order) and every setting, read from the dataclasses."""
    hints = get_type_hints(Config)
    sections = {f.name: hints[f.name] for f in fields(Config) if f.name != "sources"}
    settings: list[Setting] = []
    for section, cls in sections.items():
        kinds = get_type_hints(cls)
        for f in fields(cls):
            d: Declared = f.metadata["setting"]
            lo, hi = d.between or (None, None)
            setting = Setting(
                d.name,
                section,
                f.name,
                kinds[f.name],
                f.default,
                d.help,
                minimum=lo,
                maximum=hi,
                choices=d.choices,
                pattern=d.pattern,
            )
            settings.append(setting)
    return sections, tuple(settings)


_SECTION_TYPES, SETTINGS = _declare()
SECTIONS = tuple(_SECTION_TYPES)
_BY_PATH = {s.path: s for s in SETTINGS}
_BY_NAME = {s.name: s for s in SETTINGS}


def _build(values: Mapping[str, Any], sources: Mapping[str, str]) -> Config:
    sections = {
        section: cls(**{s.key: values[s.name] for s in SETTINGS if s.section == section})
        for section, cls in _SECTION_TYPES.items()
    }
    if values["ALERT_K"] > values["ALERT_M"]:
        raise ConfigError(
            "ALERT_K", f"{values['ALERT_K']} is more than ALERT_M ({values['ALERT_M']})"
        )
    return Config(**sections, sources=dict(sources))


def setting_at(path: str) -> Setting:
    """The setting at this TOML path (``kafka.partitions``); :class:`ConfigError` if none."""
    try:
        return _BY_PATH[path]
    except KeyError:
        raise ConfigError(path, "unknown setting") from None


def setting_named(name: str) -> Setting:
    """The setting with this canonical name; :class:`ConfigError` if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(name, "unknown setting") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def coerce(setting: Setting, raw: Any, where: str) -> Any:
    """Turn ``raw`` (from TOML or a string from the environment) into a checked value."""
    value = _convert(setting, raw, where)
    if setting.kind in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(where, f"must be finite, {setting.allowed()}; got {raw!r}")
        if (setting.minimum is not None and value < setting.minimum) or (
            setting.maximum is not None and value > setting.maximum
        ):
            raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    if setting.choices and value not in setting.choices:
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    if setting.pattern and not re.fullmatch(setting.pattern, value):
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    return value


def _convert(setting: Setting, raw: Any, where: str) -> Any:
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
                return raw.lower() in ("true", "1", "yes")
            raise ValueError
        if kind is int:
            if isinstance(raw, (bool, float)):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}") from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = False,
) -> Config:
    """Load defaults, then the TOML file, then ``FL_*`` overrides, validating each.

    ``path`` defaults to ``$FL_CONFIG`` or ``/etc/fl/fl.toml``; a missing default
    file is fine (defaults apply) unless ``require_file`` is set.
    """
    env = os.environ if env is None else env
    explicit = path is not None or CONFIG_PATH_ENV in env
    cfg_path = Path(path if path is not None else env.get(CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH))
    values = {s.name: s.default for s in SETTINGS}
    sources = dict.fromkeys(values, "default")
    if cfg_path.exists():
        for setting, raw in _read_toml(cfg_path):
            values[setting.name] = coerce(setting, raw, f"{cfg_path}: {setting.path}")
            sources[setting.name] = str(cfg_path)
    elif explicit or require_file:
        raise ConfigError(str(cfg_path), "config file not found")
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(RESERVED_ENV_PREFIXES):
            continue
        env_setting = _BY_NAME.get(name[len(ENV_PREFIX) :])
        if env_setting is None:
            raise ConfigError(name, "unknown FL_* environment setting")
        values[env_setting.name] = coerce(env_setting, raw, name)
        sources[env_setting.name] = "env"
    return _build(values, sources)


def _read_toml(path: Path) -> list[tuple[Setting, Any]]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    found: list[tuple[Setting, Any]] = []
    for section, table in doc.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: [{section}]", "unknown section; known: " + ", ".join(SECTIONS)
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}", "must be a table")
        for key, raw in table.items():
            setting = _BY_PATH.get(f"{section}.{key}")
            if setting is None:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise ConfigError(f"{path}: {section}.{key}", f"unknown key; known: {known}")
            found.append((setting, raw))
    return found


def reference_markdown() -> str:
    """The configuration reference table for the README."""
    rows = [
        "| TOML key | Name (env `FL_<NAME>`) | Default | Allowed | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        rows.append(
            f"| `{s.path}` | `{s.name}` | `{_toml_value(s.default)}` | {s.allowed()} | {s.help} |"
        )
    return "\n".join(rows)
