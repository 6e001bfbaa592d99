from pathlib import Path

import pytest

from fl_runtime.config import SETTINGS, load_config, reference_markdown, setting_named
from fl_runtime.errors import ConfigError

SEED_NAMES = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "LEARNING_RATE",
    "BATCH_SIZE",
    "LOCAL_EPOCHS",
    "AGGREGATION_INTERVAL_SECONDS",
    "MIN_NODES_FOR_AGGREGATION",
    "WEIGHT_PUBLISH_INTERVAL_SECONDS",
    "MAX_WEIGHT_AGE",
]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fl.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(env={"FL_CONFIG": str(write(tmp_path, ""))})
    for name in SEED_NAMES:
        assert cfg.value(setting_named(name)) is not None
    assert cfg.training.learning_rate == 0.05
    assert cfg.kafka.sensor_topic("7") == "sensor-data-node-7"


def test_file_then_env_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, "[training]\nlearning_rate = 0.2\nbatch_size = 64\n")
    cfg = load_config(path, env={"FL_BATCH_SIZE": "128"})
    assert cfg.training.learning_rate == 0.2
    assert cfg.training.batch_size == 128
    assert cfg.sources["LEARNING_RATE"] == str(path)
    assert cfg.sources["BATCH_SIZE"] == "env"
    assert cfg.sources["LOCAL_EPOCHS"] == "default"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[training]\nlearning_rate = -1.0\n", "training.learning_rate", "float in [1e-06, 10]"),
        ("[training]\nbatch_size = 0\n", "training.batch_size", "int in [1, 1000000]"),
        ("[training]\nbatch_size = 1.5\n", "training.batch_size", "int in"),
        ('[aggregation]\nmode = "sideways"\n', "aggregation.mode", "one of 'batch', 'async'"),
        ("[training]\nlearnin_rate = 0.1\n", "training.learnin_rate", "unknown key"),
        ("[trainng]\nlearning_rate = 0.1\n", "[trainng]", "unknown section"),
        ("[training]\nlearning_rate = nan\n", "training.learning_rate", "finite"),
        ('[kafka]\nbootstrap_servers = "a:1, b:2"\n', "kafka.bootstrap_servers", "matching"),
        ('[fog]\nnode_id = "no spaces"\n', "fog.node_id", "matching"),
        ("not toml at all [", "fl.toml", "not valid TOML"),
    ],
)
def test_bad_file_values_name_the_key_and_range(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    assert key in str(err.value)
    assert fragment in str(err.value)


def test_bad_env_values_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"FL_MIN_NODES_FOR_AGGREGATION: must be int in \[1"):
        load_config(path, env={"FL_MIN_NODES_FOR_AGGREGATION": "0"})
    with pytest.raises(ConfigError, match="FL_LERNING_RATE: unknown"):
        load_config(path, env={"FL_LERNING_RATE": "0.1"})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_replace_validates(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.replace(BATCH_SIZE=8).training.batch_size == 8
    with pytest.raises(ConfigError, match="BATCH_SIZE"):
        cfg.replace(BATCH_SIZE=-3)


def test_to_toml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[fog]\nnode_id = "7"\n'), env={})
    again = load_config(write(tmp_path, cfg.to_toml()), env={})
    assert again == cfg  # every section, every value (sources are not compared)
    assert again.fog.node_id == "7"


def test_reference_lists_every_setting() -> None:
    doc = reference_markdown()
    for s in SETTINGS:
        assert f"`{s.name}`" in doc
        assert s.help


def test_settings_are_read_one_way_typed_by_section(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[fog]\nnode_id = "7"\n'), env={})
    assert cfg.fog.node_id == "7"
    with pytest.raises(AttributeError):
        cfg.node_id  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(TypeError):
        cfg["NODE_ID"]  # type: ignore[index]
