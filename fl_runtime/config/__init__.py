"""One configuration file (TOML) with ``FL_*`` environment overrides, in typed sections.

``settings`` declares every setting once (the table), ``loader`` reads the file and
the environment into a validated :class:`Config`. Code reads values one way only,
typed: ``cfg.training.learning_rate``. This face is the package's entry point (the
``fl_runtime`` role validates ``/etc/fl/fl.toml`` through ``load_config``).
"""

from fl_runtime.config.loader import (
    SECTIONS,
    SETTINGS,
    Config,
    coerce,
    load_config,
    reference_markdown,
    setting_at,
    setting_named,
)
from fl_runtime.config.settings import NODE_ID_PATTERN, Setting

__all__ = [
    "NODE_ID_PATTERN",
    "SECTIONS",
    "SETTINGS",
    "Config",
    "Setting",
    "coerce",
    "load_config",
    "reference_markdown",
    "setting_at",
    "setting_named",
]
