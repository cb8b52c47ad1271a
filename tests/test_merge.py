"""Merge strategies: properties (Hypothesis) and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from swarmlib import merge
from swarmlib.errors import (
    ConfigurationError,
    DtypeMismatch,
    InvalidWeight,
    NonFiniteUpdate,
    ShapeMismatch,
)
from swarmlib.merge import ShardContext, get_strategy
from swarmlib.params import flatten

DTYPES = [np.float16, np.float32, np.float64]
ALL = ["mean", "coordinate_median", "trimmed_mean", "geometric_median", "krum", "multi_krum"]
ORDER_STATISTICS = ["coordinate_median", "trimmed_mean"]


def _finite(dtype: type) -> st.SearchStrategy[float]:
    bound = 1e3 if dtype is np.float16 else 1e6
    return st.floats(-bound, bound, allow_nan=False, width=np.dtype(dtype).itemsize * 8)


@st.composite
def updates(draw: st.DrawFn, min_peers: int = 1, max_peers: int = 7) -> tuple[list, np.ndarray]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([(5,), (2, 3), (1,), (4, 1, 2)]))
    n = draw(st.integers(min_peers, max_peers))
    peers = [draw(arrays(dtype, shape, elements=_finite(dtype))) for _ in range(n)]
    weights = np.array(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)), float)
    return peers, weights


def _smallest(name: str) -> int:
    return get_strategy(name).min_peers


@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_identical_inputs_return_themselves_bit_for_bit(name: str, data: st.DataObject) -> None:
    (peers, weights) = data.draw(updates(min_peers=_smallest(name), max_peers=7))
    same = [peers[0].copy() for _ in peers]
    out = get_strategy(name)(same, weights)
    assert out.dtype == peers[0].dtype
    assert out.shape == peers[0].shape
    np.testing.assert_array_equal(out, peers[0])


@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
@settings(deadline=None)
def test_dtype_and_shape_are_preserved(name: str, data: st.DataObject) -> None:
    peers, weights = data.draw(updates(min_peers=_smallest(name)))
    out = get_strategy(name)(peers, weights)
    assert out.dtype == peers[0].dtype
    assert out.shape == peers[0].shape


@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
@settings(deadline=None)
def test_peer_order_never_changes_the_result(name: str, data: st.DataObject) -> None:
    peers, weights = data.draw(updates(min_peers=_smallest(name)))
    perm = data.draw(st.permutations(range(len(peers))))
    strategy = get_strategy(name)
    a = strategy(peers, weights)
    b = strategy([peers[i] for i in perm], weights[list(perm)])
    if name in ORDER_STATISTICS:
        np.testing.assert_array_equal(a, b)  # sorting makes them exactly order-free
    else:  # sums in another order: equal up to rounding (and the Weiszfeld tolerance)
        scale = max(1.0, float(np.abs(np.stack(peers).astype(np.float64)).max()))
        tol = 4e-3 if peers[0].dtype == np.float16 else 1e-5
        np.testing.assert_allclose(
            a.astype(np.float64), b.astype(np.float64), rtol=0, atol=tol * scale
        )


@given(data=st.data())
@settings(deadline=None)
def test_mean_weights_count_like_repeated_peers(data: st.DataObject) -> None:
    peers, weights = data.draw(updates(max_peers=4))
    ints = weights.astype(int)
    repeated = [p for p, k in zip(peers, ints, strict=True) for _ in range(k)]
    weighted = merge.Mean()(peers, weights).astype(np.float64)
    plain = merge.Mean()(repeated).astype(np.float64)
    # float16/float32 are merged in float32: rounding grows with the number of terms
    dtype = peers[0].dtype
    work = np.finfo(np.promote_types(dtype, np.float32)).eps
    tol = 2 * work * (len(repeated) + 1) + 2 * np.finfo(dtype).eps
    scale = max(1.0, float(np.abs(np.stack(peers).astype(np.float64)).max()))
    np.testing.assert_allclose(weighted, plain, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("name", ["mean", "coordinate_median", "trimmed_mean", "multi_krum"])
@given(data=st.data(), power=st.integers(-8, 8))
@settings(deadline=None)
def test_scaling_all_weights_changes_nothing(name: str, data: st.DataObject, power: int) -> None:
    peers, weights = data.draw(updates(min_peers=_smallest(name)))
    strategy = get_strategy(name)
    np.testing.assert_array_equal(strategy(peers, weights), strategy(peers, weights * 2.0**power))


def test_mean_with_equal_weights_is_the_plain_mean() -> None:
    rng = np.random.default_rng(1)
    peers = [rng.standard_normal(100) for _ in range(4)]
    np.testing.assert_allclose(merge.Mean()(peers), np.mean(peers, axis=0), rtol=0, atol=1e-15)


def test_weighted_mean_follows_the_weights() -> None:
    out = merge.Mean()([np.array([0.0]), np.array([10.0])], [3, 1])
    np.testing.assert_allclose(out, [2.5])


def test_median_with_equal_weights_is_numpy_median() -> None:
    rng = np.random.default_rng(2)
    for n in (2, 3, 4, 7):
        peers = [rng.standard_normal(50) for _ in range(n)]
        np.testing.assert_array_equal(
            merge.CoordinateMedian()(peers), np.median(np.stack(peers), axis=0)
        )


def test_weighted_median_follows_the_weights() -> None:
    peers = [np.array([1.0]), np.array([2.0]), np.array([100.0])]
    assert merge.CoordinateMedian()(peers, [1, 1, 5])[0] == 100.0
    assert merge.CoordinateMedian()(peers, [5, 1, 1])[0] == 1.0


@pytest.mark.parametrize("name", ORDER_STATISTICS)
@given(data=st.data(), corrupt=st.floats(-1e300, 1e300), n_honest=st.integers(2, 6))
@settings(deadline=None)
def test_robust_strategies_resist_one_corrupted_peer(
    name: str, data: st.DataObject, corrupt: float, n_honest: int
) -> None:
    honest = [
        data.draw(arrays(np.float64, (6,), elements=st.floats(-10, 10))) for _ in range(n_honest)
    ]
    evil = np.full(6, corrupt)
    out = get_strategy(name)([*honest, evil])
    lo, hi = np.min(honest, axis=0), np.max(honest, axis=0)
    assert np.all(out >= lo) and np.all(out <= hi), (out, lo, hi)


def test_mean_does_not_resist_a_corrupted_peer() -> None:
    # the contrast that makes the robustness property meaningful
    out = merge.Mean()([np.zeros(3), np.zeros(3), np.full(3, 1e9)])
    assert np.all(out > 1e8)


def test_krum_keeps_an_honest_update_and_multi_krum_drops_the_outlier() -> None:
    rng = np.random.default_rng(3)
    honest = [1.0 + 0.01 * rng.standard_normal(20) for _ in range(5)]
    evil = np.full(20, -50.0)
    peers = [*honest[:2], evil, *honest[2:]]
    kept = merge.Krum(f=1)(peers)
    assert any(np.array_equal(kept, h) for h in honest)
    out = merge.MultiKrum(f=1)(peers)
    np.testing.assert_allclose(out, np.mean(honest, axis=0), rtol=1e-12)


def test_geometric_median_resists_an_outlier_and_converges() -> None:
    honest = [np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    out = merge.GeometricMedian(tol=1e-10, max_iter=1000)([*honest, np.array([1e6, 1e6])])
    assert np.all(np.abs(out) < 2.0)
    # for 3 points of an acute triangle the geometric median is the Fermat point
    tri = [np.array([0.0, 0.0]), np.array([2.0, 0.0]), np.array([1.0, 1.5])]
    z = merge.GeometricMedian(tol=1e-12, max_iter=10000)(tri)
    units = [(z - p) / np.linalg.norm(z - p) for p in tri]
    np.testing.assert_allclose(np.sum(units, axis=0), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_sharded_merge_equals_whole_vector_merge(name: str) -> None:
    """Shard by shard, with each yielded partial summed over the shards = the whole-vector merge."""
    rng = np.random.default_rng(4)
    n, length, n_shards = 5, 103, 4
    peers = [rng.standard_normal(length) for _ in range(n)]
    peers[3] = peers[3] + 5.0
    weights = np.arange(1, n + 1, dtype=float)
    strategy = get_strategy(name)
    whole = strategy(peers, weights)
    bounds = np.array_split(np.arange(length), n_shards)
    runs = [
        strategy.steps([p[idx] for p in peers], weights, ShardContext(offset=int(idx[0])))
        for idx in bounds
    ]
    # run the shards in lockstep, as the owners do: every partial is summed over all shards
    results: dict[int, np.ndarray] = {}
    sent: list[np.ndarray | None] = [None] * n_shards
    while len(results) < n_shards:
        partials = {}
        for i, run in enumerate(runs):
            try:
                partials[i] = next(run) if sent[i] is None else run.send(sent[i])
            except StopIteration as done:
                results[i] = done.value
        assert not partials or len(partials) == n_shards  # every shard asks alike
        total = np.sum([partials[i] for i in sorted(partials)], axis=0) if partials else None
        sent = [total] * n_shards
    sharded = np.concatenate([results[i] for i in range(n_shards)])
    if strategy.exact_when_sharded:
        np.testing.assert_array_equal(sharded, whole)
    else:
        np.testing.assert_allclose(sharded, whole, rtol=1e-6, atol=1e-9)


def test_strategy_spec_round_trips_through_get_strategy() -> None:
    for name in ALL:
        strategy = get_strategy(name)
        assert get_strategy(strategy.spec) == strategy
    assert get_strategy("trimmed_mean(k=2)").spec == "trimmed_mean(k=2)"
    assert get_strategy("mean").spec == "mean"
    with pytest.raises(ConfigurationError, match="not key=literal"):
        get_strategy("krum(f=os.system)")


# ----------------------------------------------------------------- bad input


def _layout_ctx() -> ShardContext:
    _, layout = flatten([np.zeros((2, 2)), np.zeros(3)], names=["dense/kernel", "dense/bias"])
    return ShardContext(peers=["alice", "bob", "carol"], layout=layout)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_refused_naming_peer_and_layer(name: str, bad: float) -> None:
    peers = [np.zeros(7), np.ones(7), np.full(7, 2.0)]
    peers[1][5] = bad
    strategy = get_strategy(name, f=0) if "krum" in name else get_strategy(name)
    with pytest.raises(NonFiniteUpdate) as err:
        strategy(peers, None, _layout_ctx())
    assert err.value.peer == "bob"
    assert err.value.layer == "dense/bias[1]"
    assert "bob" in str(err.value) and "dense/bias[1]" in str(err.value)


def test_shape_mismatch_names_the_peer() -> None:
    with pytest.raises(ShapeMismatch, match="carol") as err:
        merge.Mean()([np.zeros(7), np.zeros(7), np.zeros(6)], None, _layout_ctx())
    assert err.value.peer == "carol"
    assert err.value.layer == "dense/kernel..dense/bias"


def test_dtype_mismatch_names_the_peer() -> None:
    with pytest.raises(DtypeMismatch, match="bob") as err:
        merge.Mean()([np.zeros(7), np.zeros(7, np.float32), np.zeros(7)], None, _layout_ctx())
    assert err.value.peer == "bob"


def test_integer_updates_are_refused() -> None:
    with pytest.raises(DtypeMismatch, match="floating"):
        merge.Mean()([np.zeros(3, int), np.zeros(3, int)])


@pytest.mark.parametrize("weight", [0.0, -1.0, np.nan, np.inf])
def test_bad_weights_are_refused_naming_the_peer(weight: float) -> None:
    with pytest.raises(InvalidWeight) as err:
        merge.Mean()([np.zeros(7)] * 3, [1.0, 1.0, weight], _layout_ctx())
    assert err.value.peer == "carol"


def test_wrong_number_of_weights_or_names() -> None:
    with pytest.raises(ConfigurationError, match="weights"):
        merge.Mean()([np.zeros(2)] * 3, [1, 2])
    with pytest.raises(ConfigurationError, match="peer names"):
        merge.Mean()([np.zeros(2)] * 2, None, ShardContext(peers=["a"]))
    with pytest.raises(ConfigurationError, match="no updates"):
        merge.Mean()([])


def test_robust_strategies_need_enough_peers() -> None:
    with pytest.raises(ConfigurationError, match="at least 5"):
        merge.Krum(f=1)([np.zeros(2)] * 4)
    with pytest.raises(ConfigurationError, match="at least 3"):
        merge.TrimmedMean(k=1)([np.zeros(2)] * 2)


def test_unknown_strategy_and_bad_parameters() -> None:
    with pytest.raises(ConfigurationError, match="Unknown merge strategy 'avg'"):
        get_strategy("avg")
    with pytest.raises(ConfigurationError, match="k"):
        get_strategy("trimmed_mean", k=-1)
    with pytest.raises(ConfigurationError, match="Bad parameters"):
        get_strategy("mean", k=1)


def test_first_keeps_the_first_participants_update() -> None:
    a, b = np.arange(4.0), np.ones(4)
    np.testing.assert_array_equal(merge.First()([a, b]), a)
    np.testing.assert_array_equal(merge.First()([b, a]), b)


def test_hpe_spellings_resolve() -> None:
    assert isinstance(get_strategy("coordmedian"), merge.CoordinateMedian)
    assert isinstance(get_strategy("geomedian"), merge.GeometricMedian)
    assert get_strategy("trimmed_mean", k=2) == merge.TrimmedMean(k=2)
    assert get_strategy("trimmed_mean", k=2) != merge.TrimmedMean(k=1)
