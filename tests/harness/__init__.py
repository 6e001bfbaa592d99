"""Real brokers for integration tests: Kafka (KRaft), Mosquitto, and Spark helpers.

Every server runs on free loopback ports from a temporary directory, waits for
real readiness, can be killed and started again with the same data, and is
torn down by its ``stop()``, by the pytest fixtures, or at interpreter exit.
"""

from tests.harness.kafka import KafkaBroker
from tests.harness.mosquitto import MosquittoBroker
from tests.harness.ports import LOOPBACK, free_port, free_ports, wait_until
from tests.harness.spark import spark_conf, spark_jars_setting, spark_kafka_jars, spark_session

__all__ = [
    "LOOPBACK",
    "KafkaBroker",
    "MosquittoBroker",
    "free_port",
    "free_ports",
    "spark_conf",
    "spark_jars_setting",
    "spark_kafka_jars",
    "spark_session",
    "wait_until",
]
