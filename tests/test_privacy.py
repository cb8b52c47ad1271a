"""Differential privacy: clipping, noise, dp-accounting's epsilon, the budget stop, the chain."""

from __future__ import annotations

from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from swarmlib import errors
from swarmlib.ledger.audit import audit, format_audit
from swarmlib.ledger.client import rules_hash
from swarmlib.ledger.rules import SessionRules
from swarmlib.ledger.server import ChainServer
from swarmlib.privacy import GaussianDP, noise_for
from tests.node_worker import node_weights
from tests.test_node import _run, _swarm


def test_epsilon_is_dp_accountings_own_answer() -> None:
    dp = GaussianDP(clip_norm=1.0, noise_multiplier=1.3, delta=1e-6)
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.3), 40))
    assert dp.epsilon(40) == pytest.approx(accountant.get_epsilon(1e-6), rel=1e-12)
    assert dp.epsilon(0) == 0 and dp.epsilon(10) < dp.epsilon(40)


def test_the_noise_for_a_budget_spends_at_most_that_budget() -> None:
    sigma = noise_for(8.0, rounds=50, delta=1e-5)
    assert GaussianDP(1.0, sigma).epsilon(50) <= 8.0
    assert GaussianDP(1.0, sigma * 0.95).epsilon(50) > 8.0  # and hardly more noise than needed
    with pytest.raises(errors.ConfigurationError, match="rounds"):
        noise_for(8.0, rounds=0)


def test_clipping_bounds_the_update_and_the_noise_has_the_asked_variance() -> None:
    dp = GaussianDP(clip_norm=0.5, noise_multiplier=1.0)
    rng = np.random.default_rng(1)
    base = rng.normal(size=200_000)
    vector = base + rng.normal(size=base.size) * 3  # an update of norm ~1340
    clipped = vector.copy()
    norm = dp.privatize(clipped, base, 0.0, rng)  # no noise: clipping alone
    assert norm == pytest.approx(np.linalg.norm(vector - base))
    assert np.linalg.norm(clipped - base) == pytest.approx(0.5, rel=1e-9)
    small = base + 1e-4  # an update inside the bound is left as it is
    kept = small.copy()
    dp.privatize(kept, base, 0.0, rng)
    np.testing.assert_allclose(kept, small)
    std = dp.noise_std(participants=4, distributed=True)
    assert std == pytest.approx(0.5 / 2) and dp.noise_std(4, distributed=False) == 0.5
    noisy = vector.copy()
    dp.privatize(noisy, base, std, rng)
    residual = noisy - clipped
    assert residual.std() == pytest.approx(std, rel=0.02)


def test_bad_privacy_settings_are_refused_with_the_argument_named() -> None:
    for kwargs, name in [
        ({"clip_norm": 0, "noise_multiplier": 1}, "clip_norm"),
        ({"clip_norm": 1, "noise_multiplier": -1}, "noise_multiplier"),
        ({"clip_norm": 1, "noise_multiplier": 1, "delta": 2}, "delta"),
        ({"clip_norm": 1, "noise_multiplier": 1, "adaptive_clipping": True}, "adaptive_clipping"),
    ]:
        with pytest.raises(errors.ConfigurationError, match=name):
            GaussianDP(**kwargs)  # type: ignore[arg-type]


def test_the_rules_round_trip_through_their_chain_encoding() -> None:
    rules = SessionRules(3, "mean", True, GaussianDP(1.0, 1.1, 1e-5, target_epsilon=8.0))
    assert SessionRules.decode(3, rules.encode()) == rules
    assert SessionRules(2, "mean").encode() == '{"merge":"mean"}'  # older sessions read alike
    with pytest.raises(errors.ConfigurationError, match="not ones this swarmlib version reads"):
        SessionRules.decode(3, '{"merge":"mean","secure_aggregation":"yes"}')


@pytest.mark.slow
def test_a_private_swarm_adds_the_noise_and_stops_on_the_same_round_everywhere(
    chain: ChainServer, tmp_path: Path
) -> None:
    sigma, clip = 4.0, 1.0
    target = GaussianDP(clip, sigma).epsilon(4) * 1.001  # rounds 0..3 fit, round 4 does not
    dp = GaussianDP(clip, sigma, target_epsilon=target)
    rules = SessionRules(3, "mean", True, dp)
    admin, envs = _swarm(chain, tmp_path, 3, min_peers=3, rules=rules)
    for env in envs:
        env.update(TEST_INITIAL="1", TEST_ROUNDS="8")
    out = _run(envs, 8, [100, 200, 300])
    assert [o[0] for o in out] == ["budget"] * 3, out
    per_node = [{r: np.concatenate([np.ravel(a) for a in m]) for r, _, m in o[1]} for o in out]
    assert all(sorted(rounds) == [0, 1, 2, 3] for rounds in per_node)  # the same stop
    assert all(o[3] == pytest.approx(GaussianDP(clip, sigma).epsilon(4)) for o in out)
    residuals = []
    for r in (1, 2, 3):
        merged = per_node[0][r]
        assert all(np.array_equal(merged, node[r]) for node in per_node)
        base = per_node[0][r - 1].astype(np.float64)
        updates = []
        for i in range(3):
            u = np.concatenate([w.ravel() for w in node_weights(i, r)]) - base
            updates.append(u * min(1.0, clip / np.linalg.norm(u)))
        noiseless = base + np.mean(updates, axis=0)  # every node counts alike
        residuals.append(merged - noiseless)
    # each node adds N(0, (sigma*clip)^2 / 3); the mean of 3 has std sigma*clip / 3
    std = np.concatenate(residuals).std()
    assert sigma * clip / 3 * 0.6 < std < sigma * clip / 3 * 1.5, std
    # the audit shows, from the chain alone, the budget per round and secure aggregation
    rows = audit(admin, "s")
    assert [row.round for row in rows] == [0, 1, 2, 3]
    assert rows[3].epsilon == pytest.approx(dp.epsilon(4)) and rows[3].secure_aggregation
    table = format_audit(rows, "s")
    assert "epsilon" in table and "secagg" in table and f"{dp.epsilon(4):.3g}" in table


def test_the_contract_refuses_a_vote_cast_under_other_rules(
    chain: ChainServer, tmp_path: Path
) -> None:
    rules = SessionRules(3, "mean", True, GaussianDP(1.0, 1.0))
    admin, envs = _swarm(chain, tmp_path, 1, min_peers=3, rules=rules)
    from swarmlib.node import NodeConfig, SwarmNode

    node = SwarmNode(NodeConfig.from_env(envs[0]))
    other = GaussianDP(1.0, 0.5)  # less noise than the session's
    with pytest.raises(errors.ConfigurationError, match=r"noise_multiplier=0\.5"):
        SwarmNode(NodeConfig.from_env(envs[0], privacy=other)).join()
    with node:
        ledger = node.ledger
        looser = SessionRules(3, "mean", True, other)
        ledger._voting_rules["s"] = rules_hash(3, looser.encode())  # a modified node's vote
        with pytest.raises(errors.RulesMismatch, match="other rules than the session's"):
            ledger.ready("s", 0, 0, 10)
        assert admin.latest_round("s") is None
