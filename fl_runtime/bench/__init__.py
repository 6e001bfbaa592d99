"""``fl bench`` on the real stack: benchmarks that start real brokers and services on
loopback and print figures beside a baseline measured in the same run."""
