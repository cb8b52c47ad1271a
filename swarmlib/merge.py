"""Merge strategies: how the updates of several peers become one model.

Pure numpy; nothing here touches the network. Each strategy merges a *shard*: a
slice of the flattened parameter vector (or, for local use, the whole vector or
any array). The sharded exchange calls the same code on every owner's shard.

Strategies that are coordinate-wise (:class:`Mean`, :class:`CoordinateMedian`,
:class:`TrimmedMean`) need nothing beyond the shard, so merging shard by shard is
**exactly** (bit for bit) their whole-vector definition. Strategies that need
whole-vector quantities (:class:`GeometricMedian`, :class:`Krum`,
:class:`MultiKrum`) compute *partial* squared distances on their shard and need
those few scalars summed over all shards. A strategy never does that itself:
:meth:`Strategy.steps` is a generator that *yields* each partial vector and
receives the total back; whoever runs it decides how the sum is made (the
sharded exchange sums over the owners, :meth:`Strategy.__call__` on a whole
vector sends each partial straight back). The sharded result equals the
whole-vector definition up to floating-point summation order (the Krum selection
is the same except on exact ties; the geometric median agrees within its
tolerance).

Every strategy first validates its inputs (:func:`validate`): equal shapes and
dtypes, positive finite weights, and finite values. An update with NaN or Inf is
refused with :class:`~swarmlib.errors.NonFiniteUpdate` naming the peer and the
layer; it is never merged. Results keep the input dtype and shape; arithmetic
runs in float64 and is exact for identical inputs (merging N copies of a model
returns that model bit for bit).

References:
    * Mean (weighted by dataset size): McMahan et al., "Communication-Efficient
      Learning of Deep Networks from Decentralized Data", AISTATS 2017.
    * Coordinate-wise median and trimmed mean: Yin et al., "Byzantine-Robust
      Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
    * Geometric median (smoothed Weiszfeld): Pillutla, Kakade, Harchaoui,
      "Robust Aggregation for Federated Learning", IEEE TSP 2022 (arXiv:1912.13445).
    * Krum and Multi-Krum: Blanchard et al., "Machine Learning with Adversaries:
      Byzantine Tolerant Gradient Descent", NeurIPS 2017.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from swarmlib.errors import (
    ConfigurationError,
    DtypeMismatch,
    InvalidWeight,
    NonFiniteUpdate,
    ShapeMismatch,
)
from swarmlib.params import Layout

__all__ = [
    "STRATEGIES",
    "CoordinateMedian",
    "First",
    "GeometricMedian",
    "Krum",
    "Mean",
    "MergeSteps",
    "MultiKrum",
    "ShardContext",
    "ShardedMerge",
    "Strategy",
    "TrimmedMean",
    "get_strategy",
    "krum_scores",
    "pairwise_sq_distances",
    "trimmed_mean",
    "validate",
    "weighted_mean",
    "weighted_median",
]

logger = logging.getLogger(__name__)

#: A merge in progress: yields float64 partials to be summed over every shard of the
#: model, receives each total, and returns the merged shard.
MergeSteps = Generator[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ShardContext:
    """Where a shard sits in the model, to name peers and layers in errors.

    Attributes:
        peers: Name of each peer, in the order of the shards. Used in errors.
            Defaults to ``"peer 0"``, ``"peer 1"``, ….
        offset: Position of the shard's first value in the flattened vector.
            Defaults to 0.
        layout: Layer layout of the flattened vector, to name layers in errors.
            Defaults to ``None`` (errors name coordinates).
    """

    peers: Sequence[str] | None = None
    offset: int = 0
    layout: Layout | None = None

    def peer(self, i: int) -> str:
        """Name of peer ``i``."""
        return self.peers[i] if self.peers is not None else f"peer {i}"

    def where(self, index: int | None = None, size: int = 0) -> str:
        """Name of the layer at shard index ``index`` (or of the whole shard)."""
        if index is None:
            start, stop = self.offset, self.offset + size
            if self.layout is not None:
                return self.layout.layers_in(start, stop)
            return f"coordinates {start}..{stop}"
        if self.layout is not None:
            return self.layout.layer_at(self.offset + index)
        return f"coordinate {self.offset + index}"


# --------------------------------------------------------------------------- checks


def validate(
    shards: Sequence[npt.ArrayLike],
    weights: Sequence[float] | npt.ArrayLike | None = None,
    ctx: ShardContext | None = None,
) -> tuple[list[np.ndarray], np.ndarray, ShardContext]:
    """Check that updates can be merged and return them as arrays.

    Returns:
        ``(arrays, weights, ctx)`` with weights as float64.

    Raises:
        ConfigurationError: no shards, or the number of weights or peer names
            differs from the number of shards.
        DtypeMismatch: a peer's dtype differs from the first peer's, or is not
            floating point.
        ShapeMismatch: a peer's shape differs from the first peer's.
        InvalidWeight: a weight is zero, negative, NaN or Inf.
        NonFiniteUpdate: a peer's update holds NaN or Inf.
    """
    ctx = ctx or ShardContext()
    arrays = [np.asarray(s) for s in shards]
    if not arrays:
        raise ConfigurationError("Nothing to merge: got no updates.")
    if ctx.peers is not None and len(ctx.peers) != len(arrays):
        raise ConfigurationError(f"Got {len(ctx.peers)} peer names for {len(arrays)} updates.")
    w = np.ones(len(arrays)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(arrays),):
        raise ConfigurationError(f"Got {w.size} weights for {len(arrays)} updates.")
    for i, a in enumerate(arrays):
        _check_update(i, a, arrays[0], w[i], ctx)
    return arrays, w, ctx


def _check_update(i: int, a: np.ndarray, ref: np.ndarray, weight: float, ctx: ShardContext) -> None:
    """Peer ``i``'s update against the first peer's (``ref``); raises a MergeError naming it."""
    if a.dtype.kind != "f":
        raise DtypeMismatch(
            f"Update from {ctx.peer(i)} has dtype {a.dtype} in {ctx.where(size=a.size)}; "
            "only floating-point parameters can be merged.",
            peer=ctx.peer(i),
            layer=ctx.where(size=a.size),
        )
    if a.dtype != ref.dtype:
        raise DtypeMismatch(
            f"Update from {ctx.peer(i)} has dtype {a.dtype} in {ctx.where(size=a.size)}, "
            f"but {ctx.peer(0)} sent {ref.dtype}. All peers must train the same model.",
            peer=ctx.peer(i),
            layer=ctx.where(size=a.size),
        )
    if a.shape != ref.shape:
        raise ShapeMismatch(
            f"Update from {ctx.peer(i)} has shape {a.shape} in {ctx.where(size=ref.size)}, "
            f"but {ctx.peer(0)} sent {ref.shape}. All peers must train the same model.",
            peer=ctx.peer(i),
            layer=ctx.where(size=ref.size),
        )
    if not (np.isfinite(weight) and weight > 0):
        raise InvalidWeight(
            f"Merge weight of {ctx.peer(i)} is {weight}; weights must be positive and finite.",
            peer=ctx.peer(i),
        )
    if np.isfinite(a).all():
        return
    bad = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
    raise NonFiniteUpdate(
        f"Update from {ctx.peer(i)} holds {a.reshape(-1)[bad]} at {ctx.where(bad)}; "
        "it was refused and not merged. Check that peer's training (learning "
        "rate, loss scaling) and retry the round without it.",
        peer=ctx.peer(i),
        layer=ctx.where(bad),
    )


# --------------------------------------------------------------------- arithmetic


def _working_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """float32 arithmetic for float16/float32 parameters, float64 for float64."""
    return np.dtype(np.promote_types(dtype, np.float32))


_BLOCK = 1 << 15  # values per block: the working set of a block stays in the CPU cache


def weighted_mean(arrays: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)``, cast back to the input dtype.

    Computed as ``x_0 + sum(w_i / W (x_i - x_0))`` so that identical inputs are
    returned bit for bit, in float32 for float16/float32 inputs (the precision
    Keras trains in) and float64 for float64 inputs. The work runs block by
    block so that it stays in the CPU cache (about twice as fast on large shards).
    """
    ref = arrays[0].reshape(-1)
    flat = [a.reshape(-1) for a in arrays[1:]]
    work = _working_dtype(ref.dtype)
    share = (weights / weights.sum()).astype(work)[1:]
    out = np.empty(ref.shape, dtype=ref.dtype)
    acc = np.empty(min(_BLOCK, ref.size), dtype=work)
    diff = np.empty_like(acc)
    for start in range(0, ref.size, _BLOCK):
        stop = min(start + _BLOCK, ref.size)
        a, d, r = acc[: stop - start], diff[: stop - start], ref[start:stop]
        a[:] = 0
        for x, s in zip(flat, share, strict=True):
            np.subtract(x[start:stop], r, out=d, dtype=work)
            d *= s
            a += d
        a += r
        out[start:stop] = a
    return out.reshape(arrays[0].shape)


def _sort_with_weights(
    arrays: Sequence[np.ndarray], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stack and sort per coordinate by (value, weight), carrying each value's weight.

    Breaking ties between equal values by weight makes the result independent of
    the order in which peers are listed.
    """
    x = np.stack(arrays)
    w = np.broadcast_to(weights.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    order = np.lexsort((w, x), axis=0)
    return np.take_along_axis(x, order, axis=0), np.take_along_axis(w, order, axis=0)


def weighted_median(arrays: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Coordinate-wise weighted median.

    Per coordinate, the smallest value whose cumulative weight reaches half the
    total; when the cumulative weight hits exactly half, the mean of that value
    and the next. With equal weights this is ``np.median``.
    """
    xs, ws = _sort_with_weights(arrays, weights)
    n = xs.shape[0]
    cum = np.cumsum(ws, axis=0)
    total = cum[-1]
    idx = np.argmax(2.0 * cum >= total, axis=0)[np.newaxis]
    lo = np.take_along_axis(xs, idx, axis=0)[0].astype(np.float64)
    hi = np.take_along_axis(xs, np.minimum(idx + 1, n - 1), axis=0)[0].astype(np.float64)
    exact = 2.0 * np.take_along_axis(cum, idx, axis=0)[0] == total
    out: np.ndarray = np.where(exact, (lo + hi) / 2.0, lo).astype(xs.dtype, copy=False)
    return out


def trimmed_mean(arrays: Sequence[np.ndarray], weights: np.ndarray, k: int) -> np.ndarray:
    """Per coordinate, drop the ``k`` highest and ``k`` lowest values and average the rest.

    Kept values are averaged with their peers' weights (equal weights give the
    plain trimmed mean of Yin et al.).
    """
    xs, ws = _sort_with_weights(arrays, weights)
    n = xs.shape[0]
    xs, ws = xs[k : n - k], ws[k : n - k]
    ref = xs[0].astype(np.float64)
    acc = (ws * (xs.astype(np.float64) - ref)).sum(axis=0) / ws.sum(axis=0)
    out: np.ndarray = (acc + ref).astype(xs.dtype, copy=False)
    return out


def pairwise_sq_distances(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Squared Euclidean distances between all pairs, as the upper triangle (i < j), float64."""
    n = len(arrays)
    out = np.empty(n * (n - 1) // 2)
    pos = 0
    diff = np.empty(arrays[0].shape, dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            np.subtract(arrays[i], arrays[j], out=diff, dtype=np.float64)
            out[pos] = float(np.dot(diff.reshape(-1), diff.reshape(-1)))
            pos += 1
    return out


def krum_scores(upper: np.ndarray, n: int, f: int) -> np.ndarray:
    """Krum score of each of ``n`` peers from the pairwise squared distances ``upper``.

    The score of peer i is the sum of its ``n - f - 2`` smallest squared
    distances to the other peers.
    """
    d = np.zeros((n, n))
    d[np.triu_indices(n, k=1)] = upper
    d = d + d.T
    np.fill_diagonal(d, np.inf)
    nearest = np.sort(d, axis=1)[:, : n - f - 2]
    return np.asarray(nearest.sum(axis=1))


# --------------------------------------------------------------------- strategies


class Strategy:
    """A merge strategy. Call it on the peers' shards: ``strategy(shards, weights, ctx)``."""

    name: ClassVar[str]
    #: True when merging shard by shard is bit-for-bit the whole-vector definition.
    exact_when_sharded: ClassVar[bool]
    #: True for a (weighted) mean: what secure aggregation can compute from sums alone.
    linear: ClassVar[bool] = False

    @property
    def min_peers(self) -> int:
        """Smallest number of peers the strategy accepts."""
        return 1

    def __call__(
        self,
        shards: Sequence[npt.ArrayLike],
        weights: Sequence[float] | npt.ArrayLike | None = None,
        ctx: ShardContext | None = None,
    ) -> np.ndarray:
        """Validate the updates and merge them, taken as whole vectors.

        Args:
            shards: One array per peer, all of the same shape and dtype.
            weights: One positive weight per peer. Defaults to equal weights.
            ctx: Peer names and layout, for errors. Defaults to anonymous peers.

        Returns:
            The merged array, of the updates' shape and dtype.

        Raises:
            MergeError: a subclass naming the peer and layer at fault.
            ConfigurationError: fewer peers than the strategy needs.
        """
        steps = self.steps(shards, weights, ctx)
        try:
            partial = next(steps)
            while True:  # the whole vector: each partial sum is already the total
                partial = steps.send(partial)
        except StopIteration as done:
            result: np.ndarray = done.value
            return result

    def steps(
        self,
        shards: Sequence[npt.ArrayLike],
        weights: Sequence[float] | npt.ArrayLike | None = None,
        ctx: ShardContext | None = None,
    ) -> MergeSteps:
        """Merge one shard of the model, as a generator (see the module docstring).

        Validates first (raising as :meth:`__call__` does, at the first ``next``),
        then yields each float64 partial that must be summed over all shards and
        expects the total sent back; returns the merged shard. Coordinate-wise
        strategies yield nothing.
        """
        arrays, w, ctx = validate(shards, weights, ctx)
        if len(arrays) < self.min_peers:
            raise ConfigurationError(
                f"{self!r} needs at least {self.min_peers} peers; got {len(arrays)}."
            )
        return (yield from self._steps(arrays, w, ctx))

    def _steps(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> MergeSteps:
        """Merge validated arrays; strategies that need cross-shard sums override this."""
        yield from ()  # coordinate-wise: no cross-shard sums
        return self._merge(arrays, w, ctx)

    def _merge(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> np.ndarray:
        """Merge validated arrays (coordinate-wise strategies)."""
        raise NotImplementedError

    def sharded(self, layout: Layout | None = None) -> ShardedMerge:
        """This strategy as the sharded exchange calls it (``exchange.run_round(merge=...)``)."""
        return ShardedMerge(self, layout)

    @property
    def spec(self) -> str:
        """Name and parameters in one canonical string, e.g. ``trimmed_mean(k=1)``.

        Peers compare it before a round, and a session records it on chain as its
        merge rule; :func:`get_strategy` reads it back.
        """
        params = ",".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))
        return f"{self.name}({params})" if params else self.name

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strategy) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


@dataclass(frozen=True)
class ShardedMerge:
    """A strategy bound to a model's layout, called by an owner on its shard.

    ``merge(shards, weights, names, offset)`` returns :meth:`Strategy.steps`;
    ``spec`` is what the participants compare before they exchange.
    """

    strategy: Strategy
    layout: Layout | None = None

    @property
    def spec(self) -> str:
        return self.strategy.spec

    @property
    def linear(self) -> bool:
        return self.strategy.linear

    def __call__(
        self, shards: list[np.ndarray], weights: list[float], names: list[str], offset: int
    ) -> MergeSteps:
        ctx = ShardContext(peers=names, offset=offset, layout=self.layout)
        return self.strategy.steps(shards, weights, ctx)


class First(Strategy):
    """Keep the first participant's update: every node starts from the same initial weights.

    Not a merge of the peers' knowledge; the Keras callback uses it for the
    initial sync, where averaging independent random initialisations would
    shrink the weights' variance.
    """

    name = "first"
    exact_when_sharded = True

    def _merge(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> np.ndarray:
        return arrays[0].copy()


class Mean(Strategy):
    """Weighted mean; with equal weights the plain mean (FedAvg, McMahan et al. 2017)."""

    name = "mean"
    exact_when_sharded = True
    linear = True

    def _merge(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> np.ndarray:
        return weighted_mean(arrays, w)


class CoordinateMedian(Strategy):
    """Coordinate-wise weighted median (Yin et al. 2018). Robust to < half corrupted weight."""

    name = "coordinate_median"
    exact_when_sharded = True

    def _merge(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> np.ndarray:
        return weighted_median(arrays, w)


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean (Yin et al. 2018): drop the ``k`` highest and lowest values.

    Args:
        k: How many values to drop at each end, per coordinate. Needs more than
            ``2k`` peers. Defaults to 1.
    """

    name = "trimmed_mean"
    exact_when_sharded = True

    def __init__(self, k: int = 1):
        if not isinstance(k, int) or k < 0:
            raise ConfigurationError(
                f"Invalid value for argument `k`. Received: k={k!r}. Expected an int >= 0."
            )
        self.k = k

    @property
    def min_peers(self) -> int:
        """More than ``2k`` peers, so that something is left after trimming."""
        return 2 * self.k + 1

    def _merge(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> np.ndarray:
        return trimmed_mean(arrays, w, self.k)


class GeometricMedian(Strategy):
    """Weighted geometric median by the smoothed Weiszfeld algorithm (Pillutla et al. 2022).

    Starts from the weighted mean and iterates
    ``z <- sum(b_i x_i) / sum(b_i)`` with ``b_i = w_i / max(||z - x_i||, eps)``.
    It stops when a step moves ``z`` by at most ``tol * (1 + ||z||)`` (norms over
    the whole vector) or after ``max_iter`` steps. Each step costs one
    cross-shard sum of ``N + 2`` scalars in the sharded exchange.

    Args:
        tol: Relative step size at which to stop. Defaults to 1e-6.
        max_iter: Cap on Weiszfeld steps. Defaults to 100.
        eps: Smoothing: distances below ``eps`` count as ``eps``. Defaults to 1e-8.
    """

    name = "geometric_median"
    exact_when_sharded = False

    def __init__(self, tol: float = 1e-6, max_iter: int = 100, eps: float = 1e-8):
        if not tol > 0:
            raise ConfigurationError(f"Invalid value for argument `tol`. Received: tol={tol!r}.")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigurationError(
                f"Invalid value for argument `max_iter`. Received: max_iter={max_iter!r}. "
                "Expected a positive int."
            )
        if not eps > 0:
            raise ConfigurationError(f"Invalid value for argument `eps`. Received: eps={eps!r}.")
        self.tol = float(tol)
        self.max_iter = max_iter
        self.eps = float(eps)

    def _steps(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> MergeSteps:
        n = len(arrays)
        x = [a.astype(np.float64, copy=False).reshape(-1) for a in arrays]
        z = weighted_mean(x, w)
        step2 = np.inf
        for _ in range(self.max_iter):
            partial = np.empty(n + 2)
            for i, xi in enumerate(x):
                d = z - xi
                partial[i] = np.dot(d, d)
            partial[n] = step2 if np.isfinite(step2) else 0.0
            partial[n + 1] = np.dot(z, z)
            total = yield partial
            if np.isfinite(step2) and np.sqrt(total[n]) <= self.tol * (1 + np.sqrt(total[n + 1])):
                break
            beta = w / np.maximum(np.sqrt(total[:n]), self.eps)
            z_new = weighted_mean(x, beta)
            d = z_new - z
            step2 = float(np.dot(d, d))
            z = z_new
        return z.astype(arrays[0].dtype).reshape(arrays[0].shape)


class Krum(Strategy):
    """Krum (Blanchard et al. 2017): keep the one update closest to its ``n - f - 2`` neighbours.

    Tolerates ``f`` Byzantine peers when ``n >= 2f + 3``. When several updates
    share the best score exactly, their weighted mean is returned, so the result
    never depends on the order of the peers. Distances are whole-vector: in the
    sharded exchange each owner sends ``n(n-1)/2`` partial squared distances.

    Args:
        f: Number of Byzantine peers to tolerate. Defaults to 1.
    """

    name = "krum"
    exact_when_sharded = False

    def __init__(self, f: int = 1):
        if not isinstance(f, int) or f < 0:
            raise ConfigurationError(
                f"Invalid value for argument `f`. Received: f={f!r}. Expected an int >= 0."
            )
        self.f = f

    @property
    def min_peers(self) -> int:
        """``2f + 3`` peers, the bound under which Krum tolerates ``f`` Byzantine peers."""
        return 2 * self.f + 3

    def _select(self, arrays: list[np.ndarray], ctx: ShardContext, m: int) -> MergeSteps:
        """Indices of the ``m`` best-scored updates, plus any tied with the ``m``-th."""
        total = yield pairwise_sq_distances(arrays)
        scores = krum_scores(total, len(arrays), self.f)
        cutoff = np.sort(scores)[m - 1]
        chosen = np.flatnonzero(scores <= cutoff)
        logger.debug("Krum kept %s (scores %s)", [ctx.peer(int(i)) for i in chosen], scores)
        return chosen

    def _steps(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> MergeSteps:
        chosen = yield from self._select(arrays, ctx, 1)
        return weighted_mean([arrays[int(i)] for i in chosen], w[chosen])


class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al. 2017): weighted mean of the ``m`` best-scored updates.

    Updates tied with the ``m``-th best score are kept too, so the result does
    not depend on the order of the peers.

    Args:
        f: Number of Byzantine peers to tolerate. Defaults to 1.
        m: How many updates to average. Defaults to ``n - f``.
    """

    name = "multi_krum"

    def __init__(self, f: int = 1, m: int | None = None):
        super().__init__(f)
        if m is not None and (not isinstance(m, int) or m < 1):
            raise ConfigurationError(
                f"Invalid value for argument `m`. Received: m={m!r}. Expected a positive int."
            )
        self.m = m

    def _steps(self, arrays: list[np.ndarray], w: np.ndarray, ctx: ShardContext) -> MergeSteps:
        m = self.m if self.m is not None else len(arrays) - self.f
        chosen = yield from self._select(arrays, ctx, min(m, len(arrays)))
        return weighted_mean([arrays[int(i)] for i in chosen], w[chosen])


#: Strategy classes by name, with the spellings HPE Swarm Learning uses.
STRATEGIES: dict[str, type[Strategy]] = {
    "mean": Mean,
    "coordinate_median": CoordinateMedian,
    "coordmedian": CoordinateMedian,
    "median": CoordinateMedian,
    "trimmed_mean": TrimmedMean,
    "geometric_median": GeometricMedian,
    "geomedian": GeometricMedian,
    "krum": Krum,
    "multi_krum": MultiKrum,
}


def get_strategy(spec: str | Strategy, **params: Any) -> Strategy:
    """Resolve a strategy name or spec (or pass a strategy through).

    Args:
        spec: A :class:`Strategy`, one of the names in :data:`STRATEGIES`, or a
            :attr:`Strategy.spec` such as ``"trimmed_mean(k=2)"``.
        **params: Parameters for the strategy's constructor (e.g. ``k=2``).

    Raises:
        ConfigurationError: for an unknown name or parameter.
    """
    if isinstance(spec, Strategy):
        if params:
            raise ConfigurationError("Pass parameters either in the Strategy or as keywords.")
        return spec
    name, given = _parse_spec(str(spec))
    cls = STRATEGIES.get(name.lower())
    if cls is None:
        raise ConfigurationError(
            f"Unknown merge strategy {spec!r}. Choose one of: {', '.join(sorted(STRATEGIES))}."
        )
    try:
        return cls(**{**given, **params})
    except TypeError as e:
        raise ConfigurationError(f"Bad parameters for merge strategy {spec!r}: {e}") from e


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name(k=1,m=None)"`` -> ``("name", {"k": 1, "m": None})``; a bare name has none."""
    name, paren, rest = spec.strip().partition("(")
    if not paren:
        return name, {}
    if not rest.endswith(")"):
        raise ConfigurationError(f"Bad merge strategy spec {spec!r}: expected name(k=v,...).")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest[:-1].split(","))):
        key, eq, value = item.partition("=")
        try:
            if not eq:
                raise ValueError(item)
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as e:
            raise ConfigurationError(
                f"Bad merge strategy spec {spec!r}: {item!r} is not key=literal."
            ) from e
    return name, params
