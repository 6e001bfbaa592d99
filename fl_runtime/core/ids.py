"""Identifier patterns: the one definition of a valid node id.

A node id names a fog node on the wire (messages), in the configuration
(``NODE_ID``), in topic names (``sensor-data-node-<id>``) and in the inventory
(``fog_node_id``, checked by the roles with the ``fedge_node_id`` Jinja test of
plugins/test/fedge.py, which imports this constant).
"""

from __future__ import annotations

import re

NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NODE_ID_PATTERN = re.compile(NODE_ID)
