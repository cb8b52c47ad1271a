"""Flattening parameter lists into one vector and back."""

from __future__ import annotations

import numpy as np
import pytest

from swarmlib.errors import ConfigurationError, ShapeMismatch
from swarmlib.params import flatten, unflatten


def test_round_trip_keeps_shapes_dtypes_and_values() -> None:
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7.5], np.float32)]
    vec, layout = flatten(arrays, names=["kernel", "bias"])
    assert vec.dtype == np.dtype("<f4") and vec.shape == (7,)
    back = unflatten(vec, layout)
    for a, b in zip(arrays, back, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_mixed_dtypes_use_the_common_float_and_come_back() -> None:
    arrays = [np.ones(2, np.float16), np.ones(2, np.float32), np.array([3], np.int64)]
    vec, layout = flatten(arrays)
    assert vec.dtype == np.float64
    assert [a.dtype for a in unflatten(vec, layout)] == [np.float16, np.float32, np.int64]


def test_layout_names_layers() -> None:
    _, layout = flatten([np.zeros((2, 2)), np.zeros(3)], names=["k", "b"])
    assert layout.layer_at(0) == "k[0]"
    assert layout.layer_at(5) == "b[1]"
    assert layout.layers_in(2, 6) == "k..b"
    assert layout.layers_in(4, 6) == "b"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="names"):
        flatten([np.zeros(2)], names=["a", "b"])
    with pytest.raises(ConfigurationError, match="numeric"):
        flatten([np.array(["x"])])
    _, layout = flatten([np.zeros(3)])
    with pytest.raises(ShapeMismatch):
        unflatten(np.zeros(4), layout)


def test_flatten_writes_into_a_buffer_that_fits_and_allocates_otherwise() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    expected, _ = flatten(weights)
    buffer = np.full(8, np.nan, np.float32)
    vector, _ = flatten(weights, out=buffer)
    assert vector is buffer and np.array_equal(vector, expected)
    for unfit in (np.empty(9, np.float32), np.empty(8, np.float64), np.empty(16, np.float32)[::2]):
        vector, _ = flatten(weights, out=unfit)
        assert vector is not unfit and np.array_equal(vector, expected)


def test_unflatten_without_copy_gives_read_only_views_where_the_dtype_allows() -> None:
    vec, layout = flatten([np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)])
    views = unflatten(vec, layout, copy=False)
    assert [v.shape for v in views] == [(2, 3), (2,)]
    assert all(np.shares_memory(v, vec) and not v.flags.writeable for v in views)
    with pytest.raises(ValueError, match="read-only"):
        views[0][0, 0] = 99.0  # the vector (the node's merged model) cannot be written through
    copies = unflatten(vec, layout)
    assert all(not np.shares_memory(c, vec) and c.flags.writeable for c in copies)
    # a layer whose dtype is not the vector's is converted: an array of its own, writable
    mixed, mixed_layout = flatten([np.ones(2, np.float16), np.ones(2, np.float32)])
    half, single = unflatten(mixed, mixed_layout, copy=False)
    assert half.dtype == np.float16 and half.flags.writeable and not np.shares_memory(half, mixed)
    assert single.dtype == np.float32 and not single.flags.writeable
