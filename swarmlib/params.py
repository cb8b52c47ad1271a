"""Flatten a list of parameter arrays into one vector and back.

The exchange moves one flat vector per node; the layout remembers each layer's
name, shape and dtype so that the merged vector can be cut back into the arrays a
model expects, and so that an error about coordinate ``i`` can name its layer.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from swarmlib.errors import ConfigurationError, ShapeMismatch

__all__ = ["Layer", "Layout", "flatten", "unflatten"]


@dataclass(frozen=True)
class Layer:
    """One parameter array inside a flat vector."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int

    @property
    def size(self) -> int:
        """Number of elements of the array."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Layout:
    """Where each layer lives in the flat vector, and the vector's dtype."""

    layers: tuple[Layer, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Total number of elements."""
        if not self.layers:
            return 0
        last = self.layers[-1]
        return last.offset + last.size

    def layer_at(self, index: int) -> str:
        """Name of the layer holding flat coordinate ``index``."""
        offsets = [layer.offset for layer in self.layers]
        pos = bisect.bisect_right(offsets, index) - 1
        if pos < 0 or index >= self.size:
            return f"coordinate {index}"
        layer = self.layers[pos]
        return f"{layer.name}[{index - layer.offset}]"

    def layers_in(self, start: int, stop: int) -> str:
        """Names of the layers overlapping coordinates ``[start, stop)``."""
        names = [
            layer.name
            for layer in self.layers
            if layer.offset < stop and layer.offset + layer.size > start
        ]
        if not names:
            return f"coordinates {start}..{stop}"
        return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def flatten(
    arrays: Sequence[npt.ArrayLike],
    names: Sequence[str] | None = None,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Layout]:
    """Concatenate arrays into one contiguous little-endian 1-D vector.

    Args:
        arrays: The parameter arrays, e.g. ``model.get_weights()``.
        names: A name per array, used in error messages. Defaults to
            ``"weights[i]"``.
        out: A buffer to write the vector into when it has the vector's size and
            dtype (reusing one round after round saves allocating and faulting in
            the model's size of memory); otherwise, and by default, a new array.

    Returns:
        ``(vector, layout)``. The vector's dtype is the common floating dtype of
        the arrays (``float32`` for a float32 model).

    Raises:
        ConfigurationError: if ``names`` does not match ``arrays`` or an array is
            not numeric.
    """
    as_arrays = [np.asarray(a) for a in arrays]
    if names is None:
        names = [f"weights[{i}]" for i in range(len(as_arrays))]
    if len(names) != len(as_arrays):
        raise ConfigurationError(
            f"Got {len(names)} names for {len(as_arrays)} arrays; give one name per array."
        )
    for name, a in zip(names, as_arrays, strict=True):
        if a.dtype.kind not in "fiub":
            raise ConfigurationError(
                f"Array {name!r} has dtype {a.dtype}; only numeric arrays can be synced."
            )
    common = np.result_type(np.float16, *[a.dtype for a in as_arrays]) if as_arrays else np.float32
    dtype = np.dtype(common).newbyteorder("<")
    layers = []
    offset = 0
    for name, a in zip(names, as_arrays, strict=True):
        layers.append(Layer(name, tuple(int(s) for s in a.shape), a.dtype.str, offset))
        offset += a.size
    if out is not None and out.shape == (offset,) and out.dtype == dtype and out.flags.c_contiguous:
        vector = out
    else:
        vector = np.empty(offset, dtype=dtype)
    for layer, a in zip(layers, as_arrays, strict=True):
        vector[layer.offset : layer.offset + layer.size] = a.reshape(-1)
    return vector, Layout(tuple(layers), dtype.str)


def unflatten(vector: np.ndarray, layout: Layout, *, copy: bool = True) -> list[np.ndarray]:
    """Cut a flat vector back into arrays of the layout's shapes and dtypes.

    Args:
        copy: Return arrays of their own. ``False`` returns read-only views of
            ``vector`` where the dtype allows (a copy where it differs), for a
            caller that copies them anyway (``model.set_weights`` does); it saves
            copying the whole model once. Defaults to ``True``.

    Raises:
        ShapeMismatch: if the vector's length is not the layout's size.
    """
    if vector.ndim != 1 or vector.size != layout.size:
        raise ShapeMismatch(
            f"A vector of shape {vector.shape} cannot fill a layout of {layout.size} values."
        )
    arrays = []
    for layer in layout.layers:
        part = vector[layer.offset : layer.offset + layer.size]
        array = part.astype(np.dtype(layer.dtype), copy=copy).reshape(layer.shape)
        if not copy and np.may_share_memory(array, vector):
            array.flags.writeable = False  # the vector stays this round's merged model
        arrays.append(array)
    return arrays
