"""The cloud tier: the aggregator service and the aggregation log it writes.

``aggregator`` is ``fl aggregate`` (the ``aggregator`` role); ``agglog`` is the
one-JSON-object-per-round log that ``fl monitor``, ``fl report`` and the dashboard read.
"""
