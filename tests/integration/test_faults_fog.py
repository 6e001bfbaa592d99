"""The fog node's global-model listener across a Kafka outage, on a real broker
(issue #12, item 4): started while Kafka is down, it follows the topic once Kafka is back.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from fl_runtime.config import load_config
from fl_runtime.core.messages import GlobalModel, encode_global
from fl_runtime.fog.spark_driver import GlobalModelListener
from fl_runtime.service.topics import ensure_topics
from tests.harness.kafka import KafkaBroker
from tests.harness.ports import wait_until


class Offered:
    def __init__(self) -> None:
        self.versions: list[int] = []

    def offer_global(self, model: GlobalModel) -> None:
        self.versions.append(model.version)


@pytest.mark.integration
def test_listener_started_while_kafka_is_down_follows_once_it_is_back(
    kafka_private: KafkaBroker, tmp_path: Path
) -> None:
    # Prepare: Kafka is down when the fog node starts its listener
    path = tmp_path / "fl.toml"
    path.write_text(f'[kafka]\nbootstrap_servers = "{kafka_private.bootstrap}"\n')
    cfg = load_config(path, env={})
    kafka_private.stop()
    trainer, stop = Offered(), threading.Event()
    listener = GlobalModelListener(cfg, "81", trainer, stop)  # type: ignore[arg-type]  # a stand-in trainer
    listener.start()
    try:
        time.sleep(3.0)
        assert listener.is_alive() and not listener.caught_up.is_set()

        # Execute: Kafka returns and the aggregator publishes global model 7
        kafka_private.start()
        ensure_topics(cfg, ["81"])
        producer = Producer({"bootstrap.servers": kafka_private.bootstrap})
        producer.produce(
            cfg.kafka.global_model_topic,
            key=b"global",
            value=encode_global(GlobalModel(7, 7, [0.0] * 6, time.time())),
        )
        assert producer.flush(30) == 0

        # Assert: the listener is still there and hands the model to the trainer
        assert wait_until(lambda: 7 in trainer.versions, 90, 0.2), f"alive: {listener.is_alive()}"
        assert listener.caught_up.is_set() and listener.is_alive()
    finally:
        stop.set()
        listener.join(10)
    assert not listener.is_alive()
