"""In-process runs, no brokers: ``fl simulate`` and ``fl bench sgd``.

``federation`` runs the federated loop with the real core code, ``partition`` splits
a user's data across simulated nodes, ``bench`` times local training.
"""
