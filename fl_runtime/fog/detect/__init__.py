"""The fog host's scorer (``fl detect``): every reading scored by the last global model,
alerts on the local MQTT broker at once, records to Kafka when it is reachable.

It runs beside the Spark job, not inside it, and reads the fog host's own Mosquitto:
a reading is scored within milliseconds of its MQTT publish instead of after the
bridge's Kafka write and the next Spark trigger, and scoring and local alerts go on
while the fog host is cut from the cloud's Kafka.

``scoring`` (P(anomaly) and the threshold in force), ``alerts`` (k-of-m raise and
quiet-period clear per device), ``summary`` (per-device score summaries), ``spool``
(the durable SQLite spool of records bound for Kafka, and the active alerts),
``modelstore`` (the last global model on disk), ``metrics`` (Prometheus), ``core``
(:class:`DetectorCore`, the logic, free of sockets), ``kafka`` (the spool shipper
and the global-model follower), ``mqtt`` (the paho session and the alert publisher)
and ``service`` (:func:`run_detect`, ``fl detect``).
"""
