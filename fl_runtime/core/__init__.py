"""The pure core every tier shares: wire schemas and the learning maths, no I/O.

``features`` (the sensor features in model order), ``messages`` (versioned wire
schemas), ``model`` (logistic regression and its metrics), ``scaling`` (federated
standardisation), ``strategy`` (aggregation) and ``evaluation`` (federated metrics).
Nothing here opens a socket, reads the config or keeps a clock.
"""
