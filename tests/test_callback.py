"""SwarmCallback: its arguments (HPE spellings included) and whole swarms of Keras processes."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from swarmlib import errors
from swarmlib.callback import SwarmCallback, _votes_now, vote_lead
from swarmlib.launcher import LocalSwarm, run_script
from swarmlib.ledger.audit import audit

ROOT = Path(__file__).resolve().parent.parent


def test_arguments_are_checked_in_init_and_name_themselves() -> None:
    with pytest.raises(errors.ConfigurationError, match="needs `sync_frequency`"):
        SwarmCallback(min_peers=2)
    with pytest.raises(errors.ConfigurationError, match=r"Received: sync_frequency=0"):
        SwarmCallback(sync_frequency=0, min_peers=2)
    with pytest.raises(errors.ConfigurationError, match="`min_peers`"):
        SwarmCallback(sync_frequency=4, min_peers="3")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match="`merge`"):
        SwarmCallback(sync_frequency=4, min_peers=2, merge="average")
    with pytest.raises(errors.ConfigurationError, match="`checkin_on_train_end`"):
        SwarmCallback(sync_frequency=4, min_peers=2, checkin_on_train_end="sometimes")
    with pytest.raises(errors.ConfigurationError, match="`val_data`"):
        SwarmCallback(sync_frequency=4, min_peers=2, adaptive_sync=True)
    with pytest.raises(errors.ConfigurationError, match="`node_weight`"):
        SwarmCallback(sync_frequency=4, min_peers=2, node_weight=-1)


def test_hpe_spellings_are_accepted_and_mixed_or_unknown_ones_refused() -> None:
    cb = SwarmCallback(syncFrequency=8, minPeers=3, mergeMethod="geomedian", nodeWeightage=50,
                       checkinModelOnTrainEnd="inactive", useAdaptiveSync=True,
                       adsValData=([0.0], [0.0]), adsValBatchSize=16, totalEpochs=10)  # fmt: skip
    assert (cb.sync_frequency, cb.min_peers, cb.merge, cb.node_weight) == (8, 3, "geomedian", 50)
    assert (cb.checkin, cb.adaptive_sync, cb.val_batch_size) == ("inactive", True, 16)
    with pytest.raises(
        errors.ConfigurationError, match=r"both `sync_frequency` and HPE's `syncFrequency`"
    ):
        SwarmCallback(sync_frequency=8, syncFrequency=8, min_peers=2)
    with pytest.raises(errors.ConfigurationError, match=r"Unknown argument.*syncFreq"):
        SwarmCallback(syncFreq=8, min_peers=2)


def test_votes_are_cast_ahead_by_enough_batches_and_within_the_epoch_of_the_sync() -> None:
    assert vote_lead(None, 0.0, 60) == 0  # the first batch is not timed yet: vote at the sync
    assert vote_lead(0.08, 0.0, 60) == 1  # no vote timed yet: one batch ahead
    assert vote_lead(0.08, 0.15, 60) == 2  # a vote of 0.15 s needs two 0.08 s batches
    assert vote_lead(0.08, 30.0, 60) == 75  # never more than 10 % of the timeout (6 s)
    assert vote_lead(7.0, 0.05, 60) == 0  # a batch longer than that: vote at the sync
    # ... and only within the epoch of the sync (10 batches an epoch here)
    assert _votes_now(batch=7, steps=10, to_sync=3, lead=3)  # the sync ends batch 9
    assert not _votes_now(batch=6, steps=10, to_sync=3, lead=2)  # not yet
    assert not _votes_now(batch=8, steps=10, to_sync=5, lead=20)  # the sync is in the next epoch
    assert _votes_now(batch=0, steps=10, to_sync=5, lead=20)  # ... until that epoch begins
    assert _votes_now(batch=4, steps=None, to_sync=1, lead=1)  # epoch length unknown: same batch
    assert not _votes_now(batch=4, steps=None, to_sync=2, lead=5)


@pytest.mark.slow
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure-aggregation"])
def test_three_keras_nodes_agree_beat_every_local_model_and_audit_clean(
    tmp_path: Path, secure: bool
) -> None:
    rows: list[object] = []

    def check(swarm: LocalSwarm) -> None:
        rows.extend(audit(swarm.admin, swarm.session))

    # the script sets nothing: `swarmlib run --secure-aggregation` sets it for every node
    env = {"SWARMLIB_SECURE_AGGREGATION": "1"} if secure else None
    code = run_script(3, str(ROOT / "examples" / "quickstart.py"), workdir=tmp_path,
                      timeout=300, on_finish=check, extra_env=env)  # fmt: skip
    assert code == 0
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").glob("*.json"))]
    assert len(results) == 3
    assert len({r["weights_sha256"] for r in results}) == 1, "nodes ended with different weights"
    best_local = max(r["local_accuracy"] for r in results)
    assert results[0]["swarm_accuracy"] > best_local, results
    statuses = [row.status for row in rows]  # type: ignore[attr-defined]
    # every round agreed, the last one too: the round receipts record what each node loaded
    assert set(statuses) == {"agree"}, statuses
    assert all(len(row.contributions) == 3 for row in rows), rows  # type: ignore[attr-defined]
    assert {row.secure_aggregation for row in rows} == {secure}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_an_hpe_style_script_runs_unchanged(tmp_path: Path) -> None:
    code = run_script(
        2, str(ROOT / "tests" / "scripts" / "hpe_style.py"), workdir=tmp_path, timeout=300
    )
    assert code == 0
    assert (tmp_path / "hpe-0.bin.backend").read_text() == "tensorflow"
    assert (tmp_path / "hpe-0.bin").read_bytes() == (tmp_path / "hpe-1.bin").read_bytes()
    # a sync every 5 of 20 batches: the fit ends with one, so no final round follows it with
    # nothing trained in between (it would only merge the merge)
    assert (tmp_path / "hpe-0.bin.kinds").read_text() == "initial sync sync sync sync"
    # every round but the initial one voted while batches trained
    assert (tmp_path / "hpe-0.bin.voted_ahead").read_text() == "4"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_callback_runs_on_the_pytorch_and_jax_backends(tmp_path: Path, backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("CI"):  # make test installs it: under CI a missing backend is a failure
            pytest.fail(f"{backend} is not installed; `make test` installs [test-backends]")
        pytest.skip(f"needs {backend}: `pip install -e '.[test-backends]'` (make test does)")
    # a sync every 6 of 20 batches: 2 batches train after the last one, so a final merge follows
    code = run_script(2, str(ROOT / "tests" / "scripts" / "hpe_style.py"), workdir=tmp_path,
                      timeout=300, extra_env={"KERAS_BACKEND": backend,
                                              "SYNC_FREQUENCY": "6"})  # fmt: skip
    assert code == 0
    assert (tmp_path / "hpe-0.bin.backend").read_text() == backend
    assert (tmp_path / "hpe-0.bin").read_bytes() == (tmp_path / "hpe-1.bin").read_bytes()
    assert (tmp_path / "hpe-1.bin.kinds").read_text() == "initial sync sync sync final"
    assert (tmp_path / "hpe-1.bin.voted_ahead").read_text() == "4"  # the final merge too


@pytest.mark.slow
def test_a_numpy_node_joins_keras_nodes_of_the_same_architecture(tmp_path: Path) -> None:
    code = run_script(
        3, str(ROOT / "tests" / "scripts" / "mixed.py"), workdir=tmp_path, timeout=300
    )
    assert code == 0
    weights = {(tmp_path / f"mixed-{i}.bin").read_bytes() for i in range(3)}
    assert len(weights) == 1, "the numpy node and the Keras nodes ended with different weights"


@pytest.mark.slow
def test_a_failing_node_stops_the_run_with_a_non_zero_exit(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import os, sys, time\nif os.environ['SWARMLIB_NODE_INDEX'] == '1':\n"
                      "    sys.exit(3)\ntime.sleep(60)\n")  # fmt: skip
    assert run_script(2, str(script), workdir=tmp_path / "w", timeout=60) == 3


@pytest.mark.slow
def test_a_node_killed_mid_training_lets_the_others_finish(tmp_path: Path) -> None:
    code = run_script(
        3,
        str(ROOT / "tests" / "scripts" / "killed.py"),
        workdir=tmp_path,
        timeout=300,
        min_peers=2,
        quorum_wait=15,  # longer than the nodes' start-up skew, so that none misses round 0
        keep_going=True,
        extra_env={"SWARMLIB_TIMEOUT": "5"},
    )
    assert code == -9  # the killed node's status; the run reports it
    survivors = [(tmp_path / f"killed-{i}.bin") for i in (0, 1)]
    assert all(p.exists() for p in survivors), "a surviving node did not finish"
    assert survivors[0].read_bytes() == survivors[1].read_bytes()
    assert not (tmp_path / "killed-2.bin").exists()
