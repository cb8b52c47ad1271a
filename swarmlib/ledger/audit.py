"""The audit trail: per round, who took part, with what samples, and whether all loaded one model.

Read from the contract's events (``Voted``, ``RoundAgreed``) with ``get_logs``
over an explicit block range. The hash of the model merged in round *r* is what
each participant reports as ``previousMergedHash`` when it votes in round
*r + 1*, and what it records in its round receipt (``Receipt``, sent just after
the round) with the SHA-256 of the contribution it sent; a round is "pending"
only while neither has arrived.

With differential privacy, each row also holds the epsilon spent once that
round is merged, recomputed here from the session's rules on chain (noise
multiplier, delta) and the round number with dp-accounting: an auditor checks
the budget without trusting any node's arithmetic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from swarmlib.ledger.client import LedgerClient, session_id

__all__ = ["AuditRow", "audit", "format_audit"]


@dataclass
class AuditRow:
    """One agreed round attempt.

    Attributes:
        status: ``"agree"`` (every participant that reported recorded the same
            hash), ``"MISMATCH"`` (they differ), ``"pending"`` (nobody has
            reported yet) or ``"retried"`` (a later attempt of the round was agreed).
        reports: SPIFFE IDs of participants whose merge was outvoted by their
            shard's other owners (``owner_replicas``), each with the SPIFFE IDs
            of the participants that reported it on chain.
        contributions: Per participant address, the SHA-256 of the contribution
            it sent, from its round receipt (participants without one are absent).
        initial: Whether the receipts say the round merged as the initial one
            (everyone took the first participant's model); ``None`` without receipts.
    """

    round: int
    attempt: int
    participants: list[str]
    spiffe_ids: list[str]
    samples: list[int]
    hashes: dict[str, bytes] = field(default_factory=dict)
    status: str = "pending"
    secure_aggregation: bool = False
    epsilon: float | None = None
    owner_replicas: int = 1
    reports: dict[str, list[str]] = field(default_factory=dict)
    contributions: dict[str, bytes] = field(default_factory=dict)
    initial: bool | None = None

    @property
    def merged_hash(self) -> bytes | None:
        """The agreed merged-model hash, if every report agrees."""
        values = set(self.hashes.values())
        return next(iter(values)) if self.status == "agree" and len(values) == 1 else None


def audit(client: LedgerClient, session: str, *, from_block: int = 0) -> list[AuditRow]:
    """The audit rows of ``session``, by round and attempt.

    Raises:
        UnknownSession: the contract has no such session.
    """
    client.session(session)  # fails clearly on an unknown session
    rules = client.session_rules(session)
    sid = session_id(session)
    latest = client.w3.eth.block_number
    events = client.contract.events
    votes = events.Voted().get_logs(
        argument_filters={"session": sid}, from_block=from_block, to_block=latest
    )
    agreed = events.RoundAgreed().get_logs(
        argument_filters={"session": sid}, from_block=from_block, to_block=latest
    )
    reported_by: dict[tuple[int, int], dict[str, list[str]]] = defaultdict(dict)
    for ev in events.Reported().get_logs(
        argument_filters={"session": sid}, from_block=from_block, to_block=latest
    ):
        a = ev["args"]
        reported_by[a["round"], a["attempt"]].setdefault(a["accused"], []).append(a["reporter"])
    receipts = _receipts(client, sid, from_block, latest)
    samples: dict[tuple[int, int, str], int] = {}
    reported: dict[int, dict[str, bytes]] = defaultdict(dict)  # round -> member -> hash
    for ev in votes:
        a = ev["args"]
        samples[(a["round"], a["attempt"], a["member"])] = a["nSamples"]
        if a["round"] > 0 and a["previousMergedHash"] != b"\0" * 32:
            reported[a["round"] - 1].setdefault(a["member"], bytes(a["previousMergedHash"]))
    final_attempt: dict[int, int] = {}
    for ev in agreed:
        r, att = ev["args"]["round"], ev["args"]["attempt"]
        final_attempt[r] = max(final_attempt.get(r, att), att)
    spiffe: dict[str, str] = {}
    rows = []
    for ev in sorted(agreed, key=lambda e: (e["args"]["round"], e["args"]["attempt"])):
        r, att = ev["args"]["round"], ev["args"]["attempt"]
        people = list(ev["args"]["participants"])
        for p in people:
            if p not in spiffe:
                spiffe[p] = client.member(p).spiffe_id
        row = AuditRow(
            round=r,
            attempt=att,
            participants=people,
            spiffe_ids=[spiffe[p] for p in people],
            samples=[samples.get((r, att, p), 0) for p in people],
            secure_aggregation=bool(rules and rules.secure_aggregation),
            owner_replicas=rules.owner_replicas if rules else 1,
            # conservative: every round counts, the initial one included
            epsilon=rules.privacy.epsilon(r + 1) if rules and rules.privacy else None,
        )
        for accused, reporters in reported_by.get((r, att), {}).items():
            for address in (accused, *reporters):
                if address not in spiffe:
                    spiffe[address] = client.member(address).spiffe_id
            row.reports[spiffe[accused]] = [spiffe[a] for a in reporters]
        got = receipts.get((r, att), {})
        row.contributions = {p: got[p][0] for p in people if p in got}
        flags = {got[p][2] for p in people if p in got}
        row.initial = flags.pop() if len(flags) == 1 else None
        if att < final_attempt[r]:
            row.status = "retried"
        else:
            loaded = {p: got[p][1] for p in people if p in got}
            row.hashes = {p: reported[r][p] if p in reported[r] else loaded[p] for p in people
                          if p in reported[r] or p in loaded}  # fmt: skip
            distinct = set(row.hashes.values())
            row.status = (
                "pending" if not distinct else "agree" if len(distinct) == 1 else "MISMATCH"
            )
        rows.append(row)
    return rows


def _receipts(
    client: LedgerClient, sid: bytes, from_block: int, latest: int
) -> dict[tuple[int, int], dict[str, tuple[bytes, bytes, bool]]]:
    """Per round attempt and member: contribution hash, merged hash, initial flag."""
    receipts: dict[tuple[int, int], dict[str, tuple[bytes, bytes, bool]]] = defaultdict(dict)
    for ev in client.contract.events.Receipt().get_logs(
        argument_filters={"session": sid}, from_block=from_block, to_block=latest
    ):
        a = ev["args"]  # a member's first receipt of an attempt counts
        receipts[a["round"], a["attempt"]].setdefault(
            a["member"], (bytes(a["contributionHash"]), bytes(a["mergedHash"]), a["initial"])
        )
    return receipts


def format_audit(rows: list[AuditRow], session: str) -> str:
    """A table a person can read; mismatches stand out."""
    if not rows:
        return f"session {session!r}: no agreed rounds yet"
    lines = [f"session {session!r}: {len(rows)} agreed round attempt(s)"]
    replicas = max(row.owner_replicas for row in rows)
    if replicas > 1:
        lines[0] += f"; every shard merged by {replicas} owners (owner_replicas={replicas})"
    private = any(row.epsilon is not None for row in rows)
    secure = any(row.secure_aggregation for row in rows)
    extra = f"{'epsilon':>8}  " if private else ""
    extra += "secagg  " if secure else ""
    receipts = any(row.contributions for row in rows)
    extra += "receipts  " if receipts else ""
    lines.append(
        f"{'round':>5} {'att':>3}  {'status':<8}  {'merged sha256':<16}  {extra}"
        "participants (samples)"
    )
    for row in rows:
        who = ", ".join(f"{s} ({n})" for s, n in zip(row.spiffe_ids, row.samples, strict=True))
        digest = row.merged_hash.hex()[:16] if row.merged_hash else "-"
        note = ""
        if row.status == "MISMATCH":
            groups: dict[bytes, list[str]] = defaultdict(list)
            for p, h in row.hashes.items():
                groups[h].append(row.spiffe_ids[row.participants.index(p)])
            note = "  <- " + "; ".join(f"{h.hex()[:12]}: {', '.join(g)}" for h, g in groups.items())
        elif row.status == "agree" and len(row.hashes) < len(row.participants):
            note = f"  ({len(row.hashes)} of {len(row.participants)} reported)"
        for accused, reporters in row.reports.items():
            note += f"  <- {accused}'s merge outvoted (reported by {', '.join(reporters)})"
        cells = f"{row.epsilon:>8.3g}  " if private and row.epsilon is not None else ""
        cells += ("on      " if row.secure_aggregation else "off     ") if secure else ""
        if receipts:
            cells += f"{len(row.contributions)}/{len(row.participants)}".ljust(10)
        lines.append(
            f"{row.round:>5} {row.attempt:>3}  {row.status:<8}  {digest:<16}  {cells}{who}{note}"
        )
    return "\n".join(lines)
