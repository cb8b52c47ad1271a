"""A session's rules as the chain records them: one source of truth for every node.

The contract stores ``minPeers`` (it closes rounds by it) and a ``rules`` string
it does not read: canonical JSON of everything else the participants must share,
the merge strategy, secure aggregation, the differential-privacy parameters and
the number of owners per shard. Settings added later are new keys of the same
object, so the contract need not change for them; a key at its default is left out, so a
session of an older version reads the same. A node compares its own settings
with these at ``join()`` and is refused before it votes when they differ; each
vote carries the hash of the rules it was cast under, and the contract refuses
a vote whose hash is not the session's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from swarmlib.errors import ConfigurationError
from swarmlib.privacy import GaussianDP

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
        secure_aggregation: Whether owners see only sums (see docs/security.md).
        privacy: The session's differential privacy, or ``None``.
        owner_replicas: How many participants merge each shard (3 outvotes one
            wrong owner; see docs/security.md). ``1`` trusts the single owner.
    """

    min_peers: int
    merge: str = DEFAULT_MERGE
    secure_aggregation: bool = False
    privacy: GaussianDP | None = None
    owner_replicas: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.min_peers, bool) or not isinstance(self.min_peers, int):
            raise ConfigurationError(f"min_peers must be an int; got {self.min_peers!r}.")
        if not 1 <= self.min_peers < 2**32:
            raise ConfigurationError(
                f"Invalid value for `min_peers`. Received: min_peers={self.min_peers!r}. "
                "Expected a positive int."
            )
        replicas = self.owner_replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas < 2**8:
            raise ConfigurationError(
                f"Invalid value for `owner_replicas`. Received: owner_replicas={replicas!r}. "
                "Expected a whole number from 1 to 255 (3 outvotes one wrong owner per shard)."
            )

    def encode(self) -> str:
        """The ``rules`` string stored on chain (``min_peers`` is stored apart)."""
        data: dict[str, object] = {"merge": self.merge}
        if self.secure_aggregation:
            data["secure_aggregation"] = True
        if self.privacy is not None:
            data["privacy"] = self.privacy.to_rule()
        if self.owner_replicas != 1:
            data["owner_replicas"] = self.owner_replicas
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, min_peers: int, rules: str) -> SessionRules:
        """The rules read from the chain.

        Raises:
            ConfigurationError: the string is not rules this version understands.
        """
        unreadable = ConfigurationError(
            f"The session's rules on chain ({rules!r}) are not ones this swarmlib version "
            "reads; upgrade swarmlib, or use a session made by this version."
        )
        try:
            data = json.loads(rules)
            merge = data["merge"]
            secure = data.get("secure_aggregation", False)
            privacy = data.get("privacy")
            replicas = data.get("owner_replicas", 1)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise unreadable from e
        if set(data) - {"merge", "secure_aggregation", "privacy", "owner_replicas"} or not (
            isinstance(secure, bool) and isinstance(replicas, int)
        ):
            raise unreadable
        if not isinstance(merge, str):
            raise ConfigurationError(f"The session's merge rule {merge!r} is not a string.")
        dp = None if privacy is None else GaussianDP.from_rule(privacy)
        return cls(min_peers=min_peers, merge=merge, secure_aggregation=secure, privacy=dp,
                   owner_replicas=replicas)  # fmt: skip

    def __str__(self) -> str:
        text = f"min_peers={self.min_peers}, merge={self.merge!r}"
        if self.secure_aggregation:
            text += ", secure aggregation"
        text += f", privacy {self.privacy}" if self.privacy is not None else ""
        return text + (f", owner_replicas={self.owner_replicas}" if self.owner_replicas > 1 else "")
