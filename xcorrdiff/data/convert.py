"""Dataset ⇄ array ⇄ tensor: the one seam between xarray and torch.

``dataset_to_array`` stacks the variables of a :class:`xarray.Dataset` into a channel axis,
``(time, channel, y, x)``, keeping dask arrays lazy; ``to_tensor`` turns a loaded (numpy)
array into a :class:`torch.Tensor`; ``array_to_dataset`` labels a model output
``([member,] time, channel, y, x)`` back into a Dataset with coordinates and per-variable
attributes. torch is imported inside ``to_tensor`` only, so the xarray side of the package
(and ``import xcorrdiff.data.convert``) never loads it.

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset(
...     {
...         "t2m": (("time", "y", "x"), np.zeros((3, 4, 5))),
...         "orography": (("y", "x"), np.ones((4, 5))),
...     }
... )
>>> array = dataset_to_array(ds, ["t2m", "orography"])
>>> array.shape, array.dtype
((3, 2, 4, 5), dtype('float32'))
>>> back = array_to_dataset(array, ["t2m", "orography"], template=ds)
>>> back["orography"].dims
('time', 'y', 'x')
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr

if TYPE_CHECKING:
    import torch
    from numpy.typing import DTypeLike

__all__ = ["array_to_dataset", "dataset_to_array", "to_tensor"]

ArrayLike = np.ndarray | da.Array


def _check_dims(dims: Sequence[Hashable]) -> tuple[Hashable, Hashable, Hashable]:
    dims = tuple(dims)
    if len(dims) != 3 or len(set(dims)) != 3:
        raise ValueError(
            f"dims must name three distinct dimensions (time, y, x); got {dims!r}, "
            "e.g. dims=('time', 'y', 'x')"
        )
    return dims[0], dims[1], dims[2]


def _select_variables(ds: xr.Dataset, variables: Sequence[Hashable] | None) -> list[Hashable]:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"ds must be an xarray.Dataset, got {type(ds).__name__}; wrap a DataArray with "
            "da.to_dataset(name=...)"
        )
    if isinstance(variables, str):
        variables = [variables]
    names = list(ds.data_vars) if variables is None else list(variables)
    if not names:
        raise ValueError(
            f"variables selects no variable; the dataset has {sorted(map(str, ds.data_vars))}"
        )
    missing = [name for name in names if name not in ds.data_vars]
    if missing:
        raise KeyError(
            f"variables {missing} not found in the dataset; "
            f"available variables: {sorted(map(str, ds.data_vars))}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"variables lists a name twice: {names}")
    return names


def _cast(data: Any, dtype: np.dtype[Any]) -> ArrayLike:
    if isinstance(data, da.Array):
        return data.astype(dtype, copy=False)
    return np.asarray(data).astype(dtype, copy=False)


def dataset_to_array(
    ds: xr.Dataset,
    variables: Sequence[Hashable] | None = None,
    *,
    dims: Sequence[Hashable] = ("time", "y", "x"),
    dtype: DTypeLike = np.float32,
) -> ArrayLike:
    """Stack the variables of a Dataset into one ``(time, channel, y, x)`` array.

    Variables without the time dimension (invariants such as orography or a land-sea
    mask on ``(y, x)``) are broadcast along time. The result is lazy (a dask array) when any
    selected variable is dask-backed, and a numpy array otherwise; nothing is computed.
    Static variables broadcast into a dask result take the time chunks of the time-varying
    ones, so the stacked array stays chunked like the data on disk.

    Parameters
    ----------
    ds : xarray.Dataset
        Variables on ``dims`` (any order); each must have the two spatial dimensions and
        may lack the time dimension.
    variables : sequence of str, optional
        Variables to stack, in channel order. Default: all data variables, in dataset order.
    dims : tuple of str, default ``("time", "y", "x")``
        Names of the time, row and column dimensions.
    dtype : numpy dtype, default ``float32``
        Output dtype; integer and boolean variables are cast to it too.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Shape ``(time, channel, y, x)`` with ``channel = len(variables)``.

    Raises
    ------
    KeyError
        A requested variable is not in ``ds`` (the message lists the available ones).
    ValueError
        A variable lacks ``y``/``x``, has a dimension outside ``dims``, or the dataset has no
        time dimension.
    """
    time_dim, y_dim, x_dim = _check_dims(dims)
    names = _select_variables(ds, variables)
    dtype = np.dtype(dtype)

    for name in names:
        var_dims = ds[name].dims
        extra = [d for d in var_dims if d not in (time_dim, y_dim, x_dim)]
        if extra or y_dim not in var_dims or x_dim not in var_dims:
            raise ValueError(
                f"variable {name!r} has dims {var_dims}; expected ({time_dim!r}, {y_dim!r}, "
                f"{x_dim!r}) or ({y_dim!r}, {x_dim!r}) for an invariant. Select or stack "
                f"the extra dimensions {extra} first (e.g. ds.sel(level=850))"
            )
    if time_dim not in ds.dims:
        raise ValueError(
            f"the dataset has no time dimension {time_dim!r} (dims: {tuple(ds.dims)}); "
            f"add one with ds.expand_dims({time_dim!r}) or pass dims=(time, y, x)"
        )
    shape = (ds.sizes[time_dim], ds.sizes[y_dim], ds.sizes[x_dim])

    # Chunks of a time-varying dask variable: static variables are broadcast onto them.
    reference_chunks: tuple[tuple[int, ...], ...] | None = None
    for name in names:
        var = ds[name]
        if time_dim in var.dims and isinstance(var.data, da.Array):
            reference_chunks = var.transpose(time_dim, y_dim, x_dim).data.chunks
            break
    lazy = any(isinstance(ds[name].data, da.Array) for name in names)

    channels: list[ArrayLike] = []
    for name in names:
        var = ds[name]
        if time_dim in var.dims:
            data = _cast(var.transpose(time_dim, y_dim, x_dim).data, dtype)
        else:
            static = _cast(var.transpose(y_dim, x_dim).data, dtype)
            if lazy:
                chunks = reference_chunks or ((shape[0],), (shape[1],), (shape[2],))
                if not isinstance(static, da.Array):
                    static = da.from_array(static, chunks=chunks[1:])
                data = da.broadcast_to(static[None], shape, chunks=chunks)
            else:
                data = np.broadcast_to(static[None], shape)
        channels.append(data)

    if lazy:
        return da.stack([da.asarray(c) for c in channels], axis=1)
    return np.stack(channels, axis=1)


def to_tensor(
    array: np.ndarray,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Turn a loaded numpy array into a torch tensor (zero-copy where possible).

    Parameters
    ----------
    array : numpy.ndarray
        Any shape, typically ``(batch, channel, y, x)``. Integer and boolean arrays are cast
        to ``dtype`` (default ``float32``); dask arrays must be loaded first.
    dtype : torch.dtype, optional
        Tensor dtype. Default: ``torch.float32`` for integer/boolean input, else the array's.
    device : str or torch.device, optional
        Where to put the tensor; default CPU.
    channels_last : bool, default False
        Use torch's ``channels_last`` memory format for a 4-D ``(batch, channel, y, x)``
        tensor; the shape stays ``(batch, channel, y, x)``, the storage becomes NHWC, which
        convolutions on GPU run faster with under mixed precision.

    Returns
    -------
    torch.Tensor
        Same shape as ``array``. It shares memory with ``array`` when the array is
        writable, C-contiguous, already of the requested dtype and stays on the CPU.

    Raises
    ------
    TypeError
        ``array`` is a dask array (not loaded) or cannot be converted.
    ValueError
        ``channels_last`` for an array that is not 4-D.
    """
    import torch

    if isinstance(array, da.Array):
        raise TypeError(
            f"array is a lazy dask array of shape {array.shape}; load it first with "
            "array.compute() (to_tensor never computes behind your back)"
        )
    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        np_array = np.asarray(array)
        if np_array.dtype.kind in "biu":
            np_array = np_array.astype(np.float32)
        elif np_array.dtype.kind not in "fc":
            raise TypeError(
                f"array has dtype {np_array.dtype}; expected a numeric (float, integer or "
                "boolean) array"
            )
        if not np_array.flags.c_contiguous or not np_array.flags.writeable:
            np_array = np.array(np_array, order="C", copy=True)
        tensor = torch.from_numpy(np_array)
    if dtype is not None or device is not None:
        tensor = tensor.to(device=device, dtype=dtype)
    if channels_last:
        if tensor.ndim != 4:
            raise ValueError(
                f"channels_last needs a 4-D (batch, channel, y, x) array; got shape "
                f"{tuple(tensor.shape)}"
            )
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _to_numpy_or_dask(array: Any) -> ArrayLike:
    if isinstance(array, (np.ndarray, da.Array)):
        return array
    if isinstance(array, xr.DataArray):
        return array.data
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def array_to_dataset(
    array: Any,
    variables: Sequence[Hashable],
    *,
    template: xr.Dataset | xr.DataArray | None = None,
    coords: Mapping[Hashable, Any] | None = None,
    attrs: Mapping[Hashable, Mapping[str, Any]] | None = None,
    dims: Sequence[Hashable] = ("time", "y", "x"),
    member_dim: Hashable = "member",
) -> xr.Dataset:
    """Label a ``([member,] time, channel, y, x)`` array as a Dataset, one variable a channel.

    Parameters
    ----------
    array : numpy.ndarray, dask.array.Array or torch.Tensor
        Shape ``(time, channel, y, x)`` or ``(member, time, channel, y, x)``. A dask array
        stays lazy; a tensor is moved to the CPU.
    variables : sequence of str
        Channel names, ``len(variables) == channel``.
    template : xarray.Dataset or xarray.DataArray, optional
        Source of coordinates: every coordinate of the template whose dimensions are all in
        the output and whose sizes match (``time``, ``y``, ``x``, 2-D ``lat``/``lon`` …) is
        copied, and, for a Dataset, the attributes of each variable it holds.
    coords : mapping, optional
        Extra or overriding coordinates, e.g. ``{"time": times, "member": np.arange(m)}``.
    attrs : mapping of str to dict, optional
        Per-variable attributes, e.g. ``{"t2m": {"units": "K"}}``; they update the
        template's.
    dims : tuple of str, default ``("time", "y", "x")``
        Names of the time, row and column dimensions.
    member_dim : str, default ``"member"``
        Name of the leading dimension of a 5-D array.

    Returns
    -------
    xarray.Dataset
        Variables on ``([member,] time, y, x)``.

    Raises
    ------
    ValueError
        ``array`` is not 4-D or 5-D, its channel axis does not match ``variables``, or a
        template coordinate's size disagrees with the array.
    """
    time_dim, y_dim, x_dim = _check_dims(dims)
    if isinstance(variables, str):
        variables = [variables]
    names = list(variables)
    data = _to_numpy_or_dask(array)
    if data.ndim == 4:
        out_dims: tuple[Hashable, ...] = (time_dim, y_dim, x_dim)
    elif data.ndim == 5:
        out_dims = (member_dim, time_dim, y_dim, x_dim)
    else:
        raise ValueError(
            f"array has shape {tuple(data.shape)}; expected 4-D (time, channel, y, x) or "
            "5-D (member, time, channel, y, x)"
        )
    channel_axis = data.ndim - 3
    if data.shape[channel_axis] != len(names):
        raise ValueError(
            f"array has {data.shape[channel_axis]} channels (axis {channel_axis} of shape "
            f"{tuple(data.shape)}) but variables names {len(names)}: {names}"
        )
    spatial = [s for i, s in enumerate(data.shape) if i != channel_axis]
    sizes = dict(zip(out_dims, spatial, strict=True))

    out_coords: dict[Hashable, Any] = {}
    if template is not None:
        for name, coord in template.coords.items():
            if not set(coord.dims) <= set(out_dims) or (coords is not None and name in coords):
                continue
            mismatch = [d for d in coord.dims if coord.sizes[d] != sizes[d]]
            if mismatch and name in coord.dims:
                raise ValueError(
                    f"template coordinate {name!r} has {coord.sizes[name]} values but the "
                    f"array has {sizes[name]} along {name!r}; pass a matching template or "
                    f"coords={{{name!r}: ...}}"
                )
            if not mismatch:
                out_coords[name] = coord.variable
    if coords is not None:
        out_coords.update(coords)

    variables_out: dict[Hashable, xr.Variable] = {}
    for i, name in enumerate(names):
        index: tuple[Any, ...] = (slice(None),) * channel_axis + (i,)
        var_attrs: dict[str, Any] = {}
        if isinstance(template, xr.Dataset) and name in template.data_vars:
            var_attrs.update(template[name].attrs)
        elif isinstance(template, xr.DataArray) and template.name == name:
            var_attrs.update(template.attrs)
        if attrs is not None and name in attrs:
            var_attrs.update(attrs[name])
        variables_out[name] = xr.Variable(out_dims, data[index], attrs=var_attrs)
    ds_attrs = dict(template.attrs) if isinstance(template, xr.Dataset) else {}
    return xr.Dataset(variables_out, coords=out_coords, attrs=ds_attrs)
