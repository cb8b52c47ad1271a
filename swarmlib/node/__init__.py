"""The middleware: :class:`SwarmNode` turns "merge my weights with the swarm" into a round.

* :mod:`~swarmlib.node.config` — :class:`NodeConfig` and its ``SWARMLIB_*`` variables;
* :mod:`~swarmlib.node.node` — :class:`SwarmNode` (``join``, ``sync``, ``leave``);
* :mod:`~swarmlib.node.rules` — agreeing on the session's rules with the chain;
* :mod:`~swarmlib.node.votes` — votes cast ahead, leaving, in nonce order;
* :mod:`~swarmlib.node.membership` — registration, member keys, peer checks;
* :mod:`~swarmlib.node.catchup` — a node that comes late.
"""

from swarmlib.node.config import ENV, NodeConfig
from swarmlib.node.node import MAX_ATTEMPTS, SwarmNode, SyncKind, SyncResult

__all__ = ["ENV", "MAX_ATTEMPTS", "NodeConfig", "SwarmNode", "SyncKind", "SyncResult"]
