"""Disclosed contributions: a node keeps what it sent, an auditor re-computes the merge.

A node started with ``keep_contributions=DIR`` writes, for every round it
merges, the vector it sent as ``DIR/<session>/round-<r>-attempt-<a>-<address>.npy``
and its receipt beside it (``.json``: round, attempt, address, SPIFFE ID, the
SHA-256 of the contribution and of the merged model). A participant may hand
such files to an auditor; nothing is sent anywhere by the library.

:func:`verify` checks disclosed files against the round receipts on chain (the
SHA-256 each participant recorded of its own contribution) and, for a round
whose every participant disclosed, merges them again exactly as the sharded
exchange did (the same shards, the same participant order, the same strategy
and weights from the chain, the fixed-point sum under secure aggregation) and
compares the SHA-256 with the model the participants loaded. A third party so
checks a round without trusting any node. ``.npy`` files are read with
``allow_pickle=False``: a disclosed file is data, never code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swarmlib.errors import ConfigurationError
from swarmlib.ledger.audit import AuditRow
from swarmlib.ledger.rules import SessionRules
from swarmlib.merge import First, ShardContext, Strategy, get_strategy
from swarmlib.transport import secagg
from swarmlib.transport.round import shard_bounds

__all__ = ["Disclosed", "Verdict", "format_verdicts", "keep_contribution", "load_disclosed",
           "replay_merge", "verify"]  # fmt: skip


def _digest(vector: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(vector).data.cast("B")).digest()


def keep_contribution(
    folder: str | Path,
    session: str,
    round_id: int,
    attempt: int,
    vector: np.ndarray,
    *,
    address: str,
    spiffe_id: str,
    contribution: str,
    merged: str,
    initial: bool,
) -> Path:
    """Write one contribution and its receipt; returns the ``.npy`` path."""
    where = Path(folder) / session
    where.mkdir(parents=True, exist_ok=True)
    stem = where / f"round-{round_id:06d}-attempt-{attempt}-{address}"
    np.save(stem.with_suffix(".npy"), vector, allow_pickle=False)
    receipt = {
        "session": session, "round": round_id, "attempt": attempt, "address": address,
        "spiffe_id": spiffe_id, "contribution_sha256": contribution, "merged_sha256": merged,
        "initial": initial, "dtype": str(vector.dtype), "size": int(vector.size),
    }  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(receipt, indent=1) + "\n")
    return stem.with_suffix(".npy")


@dataclass(frozen=True)
class Disclosed:
    """One disclosed contribution file (read lazily)."""

    path: Path
    round: int
    attempt: int
    address: str

    def load(self) -> np.ndarray:
        """The vector, read without unpickling.

        Raises:
            ConfigurationError: the file is not a 1-D float ``.npy`` array.
        """
        try:
            vector: np.ndarray = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ConfigurationError(f"{self.path} is not a readable .npy array: {e}") from e
        if vector.ndim != 1 or vector.dtype.kind != "f":
            raise ConfigurationError(
                f"{self.path} holds a {vector.dtype} array of shape {vector.shape}; a "
                "contribution is a 1-D float vector."
            )
        return vector


def load_disclosed(
    folders: Iterable[str | Path], session: str
) -> dict[tuple[int, int, str], Disclosed]:
    """Every disclosed contribution of ``session`` under ``folders``, by (round, attempt, address).

    Looks in ``FOLDER/<session>/`` and in ``FOLDER`` itself.

    Raises:
        ConfigurationError: a folder does not exist, or two files disclose the
            same participant's contribution to one round attempt.
    """
    found: dict[tuple[int, int, str], Disclosed] = {}
    for folder in folders:
        base = Path(folder)
        if not base.is_dir():
            raise ConfigurationError(f"{base} is not a folder of disclosed contributions.")
        for meta in sorted({*base.glob("round-*.json"), *base.glob(f"{session}/round-*.json")}):
            try:
                info = json.loads(meta.read_text())
                key = (int(info["round"]), int(info["attempt"]), str(info["address"]))
                if info["session"] != session:
                    continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConfigurationError(f"{meta} is not a contribution receipt: {e}") from e
            item = Disclosed(meta.with_suffix(".npy"), *key)
            if key in found and found[key].path.resolve() != item.path.resolve():
                raise ConfigurationError(
                    f"{found[key].path} and {item.path} both disclose the contribution of "
                    f"{key[2]} to round {key[0]} attempt {key[1]}; keep one."
                )
            found[key] = item
    return found


def replay_merge(
    strategy: Strategy,
    vectors: list[np.ndarray],
    weights: list[float],
    names: list[str],
    *,
    secure: bool = False,
) -> np.ndarray:
    """Merge ``vectors`` (in the round's participant order) as the sharded exchange does.

    Shard ``k`` of ``len(vectors)`` is merged over the participants sorted by
    name, whole-vector partials are summed in shard order, and under ``secure``
    every share is summed in the 64-bit fixed-point ring: the result is the
    exchange's, bit for bit.
    """
    size, dtype = vectors[0].size, vectors[0].dtype
    out = np.empty(size, dtype=dtype)
    if secure:
        total = np.zeros(size, dtype=secagg.RING_DTYPE)
        part = np.empty(size, dtype=secagg.RING_DTYPE)
        for vector, share in zip(vectors, secagg.shares(weights), strict=True):
            secagg.encode_into(vector, share, part)
            total += part  # modulo 2**64, as the masked sum
        secagg.decode_into(total, out)
        return out
    bounds = shard_bounds(size, len(vectors))
    order = sorted(range(len(vectors)), key=lambda j: names[j])
    steps = {
        k: strategy.steps([vectors[j][a:b] for j in order], [weights[j] for j in order],
                          ShardContext(peers=[names[j] for j in order], offset=a))
        for k, (a, b) in enumerate(bounds)
    }  # fmt: skip
    totals: dict[int, np.ndarray | None] = dict.fromkeys(steps)
    while steps:
        partials = {}
        for k, gen in list(steps.items()):
            try:
                back = totals[k]
                partials[k] = next(gen) if back is None else gen.send(back)
            except StopIteration as finished:
                a, b = bounds[k]
                out[a:b] = finished.value
                del steps[k]
        if partials:
            summed = np.zeros(next(iter(partials.values())).size)
            for k in range(len(bounds)):
                summed += np.ascontiguousarray(partials[k], dtype="<f8")
            totals = dict.fromkeys(partials, summed)
    return out


@dataclass
class Verdict:
    """What :func:`verify` found for one agreed round attempt.

    ``ok`` is ``True`` when the round was re-computed and matches, ``False``
    when a check failed, ``None`` when there was not enough to check.
    """

    round: int
    attempt: int
    ok: bool | None
    findings: list[str] = field(default_factory=list)


def verify(
    rows: list[AuditRow],
    rules: SessionRules | None,
    disclosed: dict[tuple[int, int, str], Disclosed],
) -> list[Verdict]:
    """Check disclosed contributions against the receipts, and re-compute each complete round."""
    strategy = get_strategy(rules.merge if rules else "mean")
    verdicts = []
    for row in rows:
        if row.status == "retried":
            continue
        v = Verdict(row.round, row.attempt, None)
        verdicts.append(v)
        names = dict(zip(row.participants, row.spiffe_ids, strict=True))
        vectors: dict[str, np.ndarray] = {}
        for address in row.participants:
            item = disclosed.get((row.round, row.attempt, address))
            if item is None:
                continue
            vector = item.load()
            recorded = row.contributions.get(address)
            if recorded is None:
                v.findings.append(f"{names[address]}: no receipt on chain to check its file by")
            elif _digest(vector) != recorded:
                v.ok = False
                v.findings.append(
                    f"{names[address]}: {item.path.name} does NOT match the contribution "
                    f"hash it recorded on chain ({recorded.hex()[:16]})"
                )
            else:
                vectors[address] = vector
        if v.ok is False:
            continue
        if len(vectors) < len(row.participants):
            v.findings.append(
                f"{len(vectors)} of {len(row.participants)} contributions disclosed and "
                "matching their receipts: the merge is not re-computed"
            )
            continue
        if row.merged_hash is None:
            v.findings.append(f"the loaded model's hash is {row.status}: nothing to compare with")
            continue
        sizes = {x.size for x in vectors.values()}
        if len(sizes) != 1:
            v.ok = False
            v.findings.append(f"the disclosed contributions differ in size ({sorted(sizes)})")
            continue
        private = rules is not None and rules.privacy is not None
        merged = replay_merge(
            First() if row.initial else strategy,
            [vectors[a] for a in row.participants],
            [1.0 if private else float(n) for n in row.samples],
            row.spiffe_ids,
            secure=bool(rules and rules.secure_aggregation and not row.initial),
        )
        v.ok = _digest(merged) == row.merged_hash
        v.findings.append(
            f"merge re-computed from {len(vectors)} contributions: "
            + ("matches the model every participant loaded" if v.ok else
               f"DIFFERS from the model the participants loaded ({row.merged_hash.hex()[:16]})")
        )  # fmt: skip
    return verdicts


def format_verdicts(verdicts: list[Verdict], session: str) -> str:
    """One line per round attempt and a summary; failures stand out."""
    lines = []
    for v in verdicts:
        mark = {True: "verified", False: "FAILED", None: "unchecked"}[v.ok]
        lines.append(f"{v.round:>5} {v.attempt:>3}  {mark:<9}  {'; '.join(v.findings)}")
    good = sum(v.ok is True for v in verdicts)
    bad = sum(v.ok is False for v in verdicts)
    lines.append(
        f"session {session!r}: {good} round(s) verified, {bad} failed, "
        f"{len(verdicts) - good - bad} not checkable from the disclosed files"
    )
    return "\n".join(lines)
