"""The simulated sensor: one fog node's devices publishing readings at a steady rate.

Readings come from :class:`~fl_runtime.edge.machines.NodeSimulator`, are stamped with the
time they are sent and go out over MQTT at QoS 1 to
``MQTT_TOPIC_TEMPLATE.format(node_id=..., device_id=...)`` (or, with the Kafka
transport, straight to the node's Kafka topic keyed by device id). A reading counts
as *confirmed* when the broker acknowledged it (PUBACK, or a Kafka delivery report);
confirmed message ids can be appended to a file, which is what the zero-loss tests
compare with Kafka.

At most ``max_pending`` readings wait for confirmation: when the broker is away the
sensor stops producing instead of piling up memory, and paho resends the
unacknowledged ones when it reconnects. A sensor that falls behind its schedule does
not burst to catch up.

``transports`` (MQTT or Kafka), ``tracking`` (outcomes, metrics, the ids file),
``control`` (fault commands on each device's retained MQTT control topic, which the
MQTT transport follows; ``fl sensor inject`` publishes them) and ``service``
(:func:`run_sensor`, ``fl sensor``; the ``sensor_simulator`` role).
"""
