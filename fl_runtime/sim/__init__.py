"""In-process runs, no brokers: ``fl simulate`` and ``fl bench sgd``.

``federation`` runs the federated loop with the real core code, ``comparison`` sets
it beside centralized and local-only baselines, ``partition`` splits data across
simulated nodes, ``bench`` times local training.
"""
