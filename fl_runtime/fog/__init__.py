"""The fog tier: readings in from the devices, weight updates out to the cloud.

``bridge`` is ``fl bridge`` (the ``mqtt_bridge`` role): MQTT to Kafka. ``trainer``
holds a fog node's learning state and ``spark_driver`` runs it under Spark Structured
Streaming as ``fl fog`` (the ``fog_node`` role).
"""
