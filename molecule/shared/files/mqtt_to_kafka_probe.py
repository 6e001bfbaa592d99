"""Publish one reading with mosquitto_pub and wait for it on the node's Kafka topic.

Run on a fog host with the fl virtualenv's Python (it has fl_runtime and confluent-kafka):
    python mqtt_to_kafka_probe.py NODE_ID [TIMEOUT]
The Kafka bootstrap servers, the node's topic, the MQTT broker and topic template
all come from the host's own /etc/fl/fl.toml, as the bridge reads them.
The consumer is positioned at the end of every partition *before* the reading
is published, so the reading is the thing found, not older traffic. Prints one
JSON line and exits 0 when the reading arrived.
"""

import json
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from fl_runtime.config import load_config


def main() -> int:
    node_id = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    cfg = load_config()
    bootstrap = cfg.kafka.bootstrap_servers
    topic = cfg.kafka.sensor_topic(node_id)
    message_id = f"verify-{uuid.uuid4().hex[:16]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": message_id,
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=20).topics[topic].partitions
    positions = []
    for p in sorted(partitions):
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)
        positions.append(TopicPartition(topic, p, high))
    consumer.assign(positions)
    reading = {
        "schema": "fedge.sensor_reading.v1", "message_id": message_id, "device_id": message_id,
        "node_id": node_id, "seq": 0, "timestamp": time.time(),
        "vibration_x": 0.1, "vibration_y": 0.1, "vibration_z": 0.1,
        "temperature": 60.0, "pressure": 101.0, "anomaly": 0,
    }
    mqtt_topic = cfg.mqtt.topic_template.format(node_id=node_id, device_id=message_id)
    subprocess.run(["mosquitto_pub", "-h", cfg.mqtt.host, "-p", str(cfg.mqtt.port), "-q", "1",
                    "-t", mqtt_topic, "-m", json.dumps(reading)],
                   check=True, timeout=30)
    start = time.time()
    while time.time() - start < timeout:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if message_id.encode() in (msg.value() or b""):
            print(json.dumps({"found": True, "message_id": message_id, "topic": topic,
                              "partition": msg.partition(), "offset": msg.offset(),
                              "seconds": round(time.time() - start, 2)}))
            consumer.close()
            return 0
    print(json.dumps({"found": False, "message_id": message_id, "topic": topic}))
    consumer.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
