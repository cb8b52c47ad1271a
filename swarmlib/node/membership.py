"""Who may take part: this node's registration, the members' keys, and the checks on peers.

A node publishes its endpoints, CURVE key and SVID hash on chain
(:meth:`Membership.register`), answers every round's credential check with a
signed binding of its SVID to that registration (:meth:`Membership.credentials`),
and accepts a participant only if its SVID chains to the trust bundle and names
the SPIFFE ID, address, CURVE key and endpoint the chain holds for it
(:meth:`Membership.verify_peer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from zmq.utils import z85

from swarmlib.identity import (
    Binding,
    Credentials,
    Expected,
    IdentitySource,
    make_credentials,
    svid_hash,
    verify_credentials,
)
from swarmlib.ledger import LedgerClient, MemberInfo, connect
from swarmlib.transport import CurveKeyPair, Peer

__all__ = ["Membership"]

_MEMBER_REFRESH_S = 2.0  # least time between chain reads of the member list (key checks)


class Membership:
    """This node's membership and its view of the other members.

    Args:
        ledger: The node's contract client (signs its registration).
        identity: The node's SVID source.
        account: The node's Ethereum account.
        curve: The node's CURVE key pair.
        chain_id: The chain's id, bound into the credentials.
        rpc: The chain's URL; the admission checks, which run in ZeroMQ's
            authenticator threads, get their own connection to it (an
            in-process ``"embedded"`` chain has none to give: unknown keys are
            then refused without a read).
    """

    def __init__(
        self,
        ledger: LedgerClient,
        identity: IdentitySource,
        account: LocalAccount,
        curve: CurveKeyPair,
        chain_id: int,
        rpc: str,
    ):
        self.ledger = ledger
        self.identity = identity
        self.account = account
        self.curve = curve
        self.chain_id = chain_id
        self.advertised = ""  # set by register(): "control-endpoint fetch-endpoint"
        self._registered_hash: bytes | None = None
        self._members: dict[str, MemberInfo] = {}  # the last round's participants, by name
        self._member_keys: set[bytes] = set()
        self._read_at = -_MEMBER_REFRESH_S
        self._lock = threading.Lock()
        self._rotated = threading.Event()  # the source told of a new SVID since it was published
        identity.subscribe(self._rotated.set)
        self._reader = (
            None if rpc == "embedded" else LedgerClient(connect(rpc), ledger.address, None, rpc=rpc)
        )

    def is_member_key(self, key: bytes) -> bool:
        """Whether a Z85 CURVE key belongs to an active member (asks the chain on a miss).

        The chain is asked at most every few seconds, so that a stranger knocking
        again and again does not turn into a stream of chain reads.
        """
        with self._lock:
            stale = time.monotonic() - self._read_at > _MEMBER_REFRESH_S
            if key not in self._member_keys and self._reader is not None and stale:
                self._read_at = time.monotonic()
                self._member_keys = {
                    bytes(z85.encode(m.curve_key))
                    for m in self._reader.members()
                    if m.active and m.registered
                }
            return key in self._member_keys

    def register(self, advertised: str) -> None:
        """Publish endpoints, CURVE key and SVID hash, unless the chain holds them already."""
        self.advertised = advertised
        leaf_hash = svid_hash(self.identity.svid().leaf)
        me = self.ledger.member(self.account.address)
        wanted = (advertised, self.curve.public_raw, leaf_hash)
        if (me.endpoint, me.curve_key, me.svid_hash) != wanted or not me.registered:
            self.ledger.register(*wanted)
        self._registered_hash = leaf_hash

    def register_if_rotated(self) -> None:
        """Publish a rotated SVID's hash before any peer checks it (after the source said so)."""
        if not self._rotated.is_set():
            return
        self._rotated.clear()
        if svid_hash(self.identity.svid().leaf) != self._registered_hash:
            self.register(self.advertised)

    def credentials(self) -> bytes:
        """This node's SVID and its signed binding to the chain registration."""
        binding = Binding(
            address=self.account.address,
            curve_key=self.curve.public.decode(),
            endpoint=self.advertised,
            chain_id=self.chain_id,
            contract=self.ledger.address,
        )
        return make_credentials(self.identity.svid(), binding).encode()

    def verify_peer(self, peer: Peer, raw: bytes) -> None:
        """Check a participant's credentials against its chain record (raises to refuse)."""
        member = self._members[peer.name]
        expected = Expected(
            address=member.address,
            spiffe_id=member.spiffe_id,
            svid_hash=member.svid_hash,
            curve_key=peer.public_key.decode(),
            chain_id=self.chain_id,
            contract=self.ledger.address,
            endpoint=member.endpoint,
        )
        verify_credentials(Credentials.decode(raw), expected, self.identity.bundle)

    def address_of(self, name: str) -> str:
        """The chain address of a participant of the last round, by its name (SPIFFE ID)."""
        return self._members[name].address

    def peers(
        self,
        addresses: Sequence[str],
        excluded: set[str],
        members: Sequence[MemberInfo] | None = None,
    ) -> list[Peer]:
        """The round's participants as the exchange knows them, less ``excluded`` names."""
        peers = []
        for member in self.ledger.members_of(addresses) if members is None else members:
            if member.spiffe_id in excluded:
                continue
            self._members[member.spiffe_id] = member
            key = z85.encode(member.curve_key)
            peers.append(Peer(member.spiffe_id, member.endpoint.split()[0], bytes(key)))
        return peers
