"""What the long-running services share, whatever their tier.

``common`` (logging, shutdown, metrics, Kafka client settings), ``deadletter`` (the
rejected-input path) and ``topics`` (``fl topics ensure``: the Kafka topics from config).
"""
