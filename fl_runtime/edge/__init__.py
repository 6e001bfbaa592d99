"""The device tier: simulated machines and the sensor service that publishes them.

``machines`` models the industrial machines (one non-IID profile per fog node);
``sensor`` is ``fl sensor``, run by the ``sensor_simulator`` role.
"""
