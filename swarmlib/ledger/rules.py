"""A session's rules as the chain records them: one source of truth for every node.

The contract stores ``minPeers`` (it closes rounds by it) and a ``rules`` string
it does not read: canonical JSON of everything else the participants must share,
today the merge strategy. Settings added later (secure aggregation, owner
replicas, privacy) are new keys of the same object, so the contract need not
change for them. A node compares its own settings with these at ``join()`` and is
refused before it votes when they differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from swarmlib.errors import ConfigurationError

__all__ = ["DEFAULT_MERGE", "SessionRules"]

#: The merge a session gets when neither its creator nor its first node names one.
DEFAULT_MERGE = "mean"


@dataclass(frozen=True)
class SessionRules:
    """What every participant of a session must agree on.

    Attributes:
        min_peers: Fewest participants a round may close with.
        merge: The merge strategy, as a :attr:`swarmlib.merge.Strategy.spec`
            (or any name :func:`swarmlib.merge.get_strategy` accepts).
    """

    min_peers: int
    merge: str = DEFAULT_MERGE

    def __post_init__(self) -> None:
        if isinstance(self.min_peers, bool) or not isinstance(self.min_peers, int):
            raise ConfigurationError(f"min_peers must be an int; got {self.min_peers!r}.")
        if not 1 <= self.min_peers < 2**32:
            raise ConfigurationError(
                f"Invalid value for `min_peers`. Received: min_peers={self.min_peers!r}. "
                "Expected a positive int."
            )

    def encode(self) -> str:
        """The ``rules`` string stored on chain (``min_peers`` is stored apart)."""
        return json.dumps({"merge": self.merge}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, min_peers: int, rules: str) -> SessionRules:
        """The rules read from the chain.

        Raises:
            ConfigurationError: the string is not rules this version understands.
        """
        try:
            data = json.loads(rules)
            merge = data["merge"]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(
                f"The session's rules on chain ({rules!r}) are not ones this swarmlib version "
                "reads; upgrade swarmlib, or use a session made by this version."
            ) from e
        if not isinstance(merge, str):
            raise ConfigurationError(f"The session's merge rule {merge!r} is not a string.")
        return cls(min_peers=min_peers, merge=merge)
