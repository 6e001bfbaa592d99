"""The MQTT -> Kafka bridge of one fog node: at least once, bounded, per-device order.

Readings arrive from Mosquitto over a persistent MQTT v5 session (fixed client id,
``clean_start=False``, a session expiry) with manual acknowledgements. Each one is
validated; a valid reading is produced to the node's Kafka topic keyed by its device
id, an invalid one goes to the dead-letter topic with its reason. The MQTT message is
acknowledged only from the Kafka delivery callback, after the write succeeded, so a
bridge that crashes at any point loses nothing: Mosquitto redelivers what it never
saw acknowledged (duplicates are possible, loss is not).

Back-pressure: the bridge announces ``Receive Maximum = MQTT_MAX_INFLIGHT`` when it
connects, so Mosquitto never has more than that many unacknowledged messages out to
it. When Kafka is down the window fills, Mosquitto queues the rest for the session,
and the bridge's memory stays bounded; when Kafka returns the callbacks fire, the
acks go out and the flow resumes.

``routes`` (MQTT filters to Kafka topics), ``metrics`` (Prometheus), ``forwarding``
(:class:`BridgeCore`, the logic, free of sockets), ``mqtt`` (the paho session and its
callbacks) and ``service`` (:func:`run_bridge`, ``fl bridge``; the ``mqtt_bridge`` role).
"""
