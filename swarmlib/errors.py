"""Every error swarmlib raises, under one root.

Catch :class:`SwarmError` to handle anything the library raises. Leaves also
inherit the builtin they resemble, so ``except TimeoutError`` still works for a
:class:`PeerTimeout`::

    SwarmError
    ├── ConfigurationError (ValueError)      a bad argument or setting; fix the call
    ├── MergeError (ValueError)              updates that cannot be merged
    │   ├── ShapeMismatch                    a peer's update has another shape
    │   ├── DtypeMismatch                    a peer's update has another dtype
    │   ├── NonFiniteUpdate                  a peer's update holds NaN or Inf (refused)
    │   └── InvalidWeight                    a merge weight is zero, negative or not finite
    └── TransportError (ConnectionError)     the peer-to-peer exchange failed
        └── RoundFailed                      this round cannot complete; retry without
            │                                ``err.culprits``
            ├── PeerTimeout (TimeoutError)   participants sent nothing within the timeout
            └── PeerRejected                 a participant's contribution was refused

Messages that are merely *foreign* (a non-participant, another round, a replay,
a tampered or truncated frame) never raise: they are dropped and logged, and the
round goes on.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigurationError",
    "DtypeMismatch",
    "InvalidWeight",
    "MergeError",
    "NonFiniteUpdate",
    "PeerRejected",
    "PeerTimeout",
    "RoundFailed",
    "ShapeMismatch",
    "SwarmError",
    "SwarmWarning",
    "TransportError",
]


class SwarmError(Exception):
    """Root of every exception raised by swarmlib."""


class SwarmWarning(UserWarning):
    """Root of every warning issued by swarmlib."""


class ConfigurationError(SwarmError, ValueError):
    """An argument or setting is invalid. The message names it and says what is expected."""


class MergeError(SwarmError, ValueError):
    """Updates cannot be merged.

    Attributes:
        peer: Name of the peer whose update was refused, or ``None`` if no single
            peer is at fault.
        layer: Name of the layer (or layer range) concerned, or ``None``.
    """

    def __init__(self, message: str, *, peer: str | None = None, layer: str | None = None):
        super().__init__(message)
        self.peer = peer
        self.layer = layer


class ShapeMismatch(MergeError):
    """A peer's update does not have the shape of the others."""


class DtypeMismatch(MergeError):
    """A peer's update does not have the dtype of the others."""


class NonFiniteUpdate(MergeError):
    """A peer's update contains NaN or Inf. It is refused, never merged."""


class InvalidWeight(MergeError):
    """A merge weight is zero, negative or not finite."""


class TransportError(SwarmError, ConnectionError):
    """The peer-to-peer exchange failed."""


class RoundFailed(TransportError):
    """A sync round could not complete on this node.

    The caller may retry the round (as the next attempt) without the peers in
    :attr:`culprits`, as long as enough participants remain.

    Attributes:
        culprits: Names of the participants that caused the failure.
        round_id: The round that failed.
        attempt: The attempt of that round that failed.
    """

    def __init__(self, message: str, *, culprits: Sequence[str], round_id: int, attempt: int):
        super().__init__(message)
        self.culprits = tuple(culprits)
        self.round_id = round_id
        self.attempt = attempt


class PeerTimeout(RoundFailed, TimeoutError):
    """Participants sent nothing expected within the timeout; :attr:`culprits` names them."""


class PeerRejected(RoundFailed):
    """A participant's contribution was refused (bad model size, NaN/Inf, bad weight)."""
