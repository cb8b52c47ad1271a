"""``swarmlib audit``: per round, who took part, with how many samples, and whether hashes agree."""

from __future__ import annotations

from swarmlib.ledger.audit import audit, format_audit
from tests.ledger_swarm import H, Swarm


def _round(swarm: Swarm, r: int, hashes: list[bytes], voters: tuple[int, ...] = (0, 1, 2)) -> None:
    for i, prev in zip(voters, hashes, strict=True):
        swarm.nodes[i].ready("s", r, 0, 100 * (i + 1), prev)


def test_audit_shows_participants_samples_and_hash_agreement(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    _round(swarm, 0, [H[0]] * 3)  # nothing merged before round 0
    _round(swarm, 1, [H[1]] * 3)  # all loaded the same merged model of round 0
    _round(swarm, 2, [H[2], H[2], H[3]])  # node 2 loaded something else after round 1
    rows = audit(swarm.admin, "s")
    assert [(r.round, r.status) for r in rows] == [(0, "agree"), (1, "MISMATCH"), (2, "pending")]
    assert rows[0].merged_hash == H[1]
    assert rows[0].samples == [100, 200, 300]
    assert rows[0].spiffe_ids == [f"spiffe://swarm.test/node-{i}" for i in range(3)]
    text = format_audit(rows, "s")
    assert "MISMATCH" in text and "spiffe://swarm.test/node-2" in text
    assert H[3].hex()[:12] in text
