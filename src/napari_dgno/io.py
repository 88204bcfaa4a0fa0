"""Lazy TIFF / OME-TIFF reading and plane-by-plane writing that keep axes, pixel sizes and provenance.

Reading never loads pixels: :func:`read_image` returns a dask array over the file (one chunk per
page, or per tile of tiled TIFFs) plus the metadata microscopists care about, from OME-XML, ImageJ
hyperstack tags, tifffile's JSON ("shaped") description or, for plain TIFFs, resolution tags in
centimetres. Interleaved samples (RGB) are reported as a ``C`` axis; tifffile's ``I``/``Q`` axes
(a plain multi-page file) as ``Z`` (or ``T`` when a Z axis exists).

Writing (:func:`write_image`): ``.ome.tif``/``.ome.tiff`` gives OME-TIFF; other ``.tif``/``.tiff``
names give an ImageJ hyperstack when ImageJ can represent the data (axes in TZCYX order, uint8 /
uint16 / float32, under 4 GB), else a tifffile "shaped" TIFF (BigTIFF when large). Either way
:func:`read_image` recovers axes, scale, units, channel names and our provenance
(``metadata["napari_dgno"]``). Pages are computed and written one at a time into a temporary file
in the target folder that replaces the target only when complete, so memory stays at a few planes
and an error, cancel or Ctrl-C never leaves a partial file.

No napari, Qt or torch here: the napari reader/writer and the CLI both use this module.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile

from .engine.distributed import parallel_tasks
from .engine.hooks import CancelToken, check_cancel_token, raise_if_cancelled

#: Metadata key (and OME MapAnnotation namespace) under which napari-dgno keeps its provenance.
PROVENANCE_KEY = "napari_dgno"
OME_NAMESPACE = "napari-dgno"
TIFF_SUFFIXES = (".tif", ".tiff")
#: Above this many bytes files are written as BigTIFF (classic TIFF offsets are 32-bit).
BIGTIFF_BYTES = 2**32 - 2**25
_MICRON = "µm"
_UNIT_ALIASES = {"micron": _MICRON, "microns": _MICRON, "um": _MICRON, "\\u00B5m": _MICRON, "\u03bcm": _MICRON}
_IMAGEJ_AXES = "TZCYXS"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


@dataclass
class ImageData:
    """An image on disk, opened lazily, with what is known about its axes and physical units."""

    data: da.Array
    axes: str
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    channel_names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path = field(default_factory=Path)


# --------------------------------------------------------------------------------------- reading


class _TiffArray:
    """A TIFF series as an indexable array that opens the file on first use in each process.

    Picklable (path and geometry only), so dask graphs built on it run on distributed workers that
    see the same path.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, series: int = 0):
        self.path, self.shape, self.dtype, self.series = path, tuple(shape), np.dtype(dtype), series
        self.ndim = len(self.shape)
        self._array = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_array", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _array=None, _lock=threading.Lock())

    def open(self):
        with self._lock:
            if self._array is None:
                import zarr

                store = tifffile.imread(self.path, aszarr=True, series=self.series, level=0)
                self._array = zarr.open(store, mode="r")
            return self._array

    def __getitem__(self, key):
        return np.asarray(self.open()[key])


def _map_axes(axes: str) -> str:
    """tifffile axis codes -> ours: S (samples) -> C; I/Q (unknown sequence) -> Z, or T."""
    out = list(axes.upper())
    if "S" in out and "C" not in out:
        out[out.index("S")] = "C"
    for code in ("I", "Q"):
        for target in ("Z", "T"):
            if code in out and target not in out:
                out[out.index(code)] = target
    return "".join(out)


def _unit(value: Any) -> str:
    text = str(value).strip()
    return _UNIT_ALIASES.get(text, _UNIT_ALIASES.get(text.lower(), text))


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _ome_info(xml: str) -> tuple[dict, dict, list | None, dict]:
    ome = tifffile.xml2dict(xml).get("OME", {})
    image = _as_list(ome.get("Image"))[0] if ome.get("Image") else {}
    pixels = image.get("Pixels", {})
    scale, units = {}, {}
    for axis in "XYZ":
        if pixels.get(f"PhysicalSize{axis}") is not None:
            scale[axis] = float(pixels[f"PhysicalSize{axis}"])
            units[axis] = _unit(pixels.get(f"PhysicalSize{axis}Unit", _MICRON))
    if pixels.get("TimeIncrement") is not None:
        scale["T"] = float(pixels["TimeIncrement"])
        units["T"] = str(pixels.get("TimeIncrementUnit", "s"))
    names = [channel.get("Name") for channel in _as_list(pixels.get("Channel"))]
    extra = {}
    annotations = ome.get("StructuredAnnotations") or {}
    for annotation in _as_list(annotations.get("MapAnnotation")):
        if annotation.get("Namespace") != OME_NAMESPACE:
            continue
        for item in _as_list((annotation.get("Value") or {}).get("M")):
            extra[item["K"]] = _loads(item.get("value"))
    if not names or any(n is None for n in names) or "channel_names" in extra:
        names = extra.pop("channel_names", None)
    return scale, units, names, extra


def _resolution(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Pixel size along (Y, X) in resolution-tag units, or None when the tags are absent or 1."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and yn) or (xn == xd and yn == yd):
        return None
    return yd / yn, xd / xn


def _imagej_info(meta: dict, page: tifffile.TiffPage) -> tuple[dict, dict, list | None, dict]:
    scale, units = {}, {}
    unit = _unit(meta["unit"]) if meta.get("unit") else None
    size = _resolution(page)
    if size is not None:
        scale.update(Y=size[0], X=size[1])
    if meta.get("spacing"):
        scale["Z"] = float(meta["spacing"])
    if unit:
        units.update({axis: unit for axis in scale})
    if meta.get("finterval"):
        scale["T"], units["T"] = float(meta["finterval"]), "s"
    props = {k: _loads(v) for k, v in (meta.get("Properties") or {}).items()}
    names = props.pop("channel_names", None)
    skip = ("ImageJ", "images", "channels", "slices", "frames", "hyperstack", "mode", "unit", "spacing",
            "finterval", "Properties", "loop", "min", "max")
    imagej = {k: v for k, v in meta.items() if k not in skip and isinstance(v, (str, int, float))}
    extra = {"imagej": imagej} if imagej else {}
    extra.update(props)
    return scale, units, names, extra


def _shaped_info(meta: dict) -> tuple[dict, dict, list | None, dict]:
    meta = dict(meta)
    for key in ("shape", "axes"):
        meta.pop(key, None)
    return dict(meta.pop("scale", {}) or {}), dict(meta.pop("units", {}) or {}), meta.pop("channel_names", None), meta


def _plain_info(page: tifffile.TiffPage) -> tuple[dict, dict, list | None, dict]:
    size = _resolution(page)
    unit = page.tags.get("ResolutionUnit")
    if size is None or unit is None or unit.value != tifffile.RESUNIT.CENTIMETER:
        return {}, {}, None, {}  # inch-based sizes are display dpi, not pixel sizes
    return {"Y": size[0] * 1e4, "X": size[1] * 1e4}, {"Y": _MICRON, "X": _MICRON}, None, {}


def read_image(path: str | os.PathLike) -> ImageData:
    """Open a TIFF/OME-TIFF/ImageJ file lazily (first series, full resolution)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a .tif/.tiff file")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.pages[0] if series.pages and series.pages[0] is not None else tif.pages[0]
            if tif.is_ome:
                fmt, info = "ome", _ome_info(tif.ome_metadata)
            elif tif.is_imagej:
                fmt, info = "imagej", _imagej_info(tif.imagej_metadata or {}, page)
            elif tif.is_shaped and tif.shaped_metadata:
                fmt, info = "shaped", _shaped_info(tif.shaped_metadata[0])
            else:
                fmt, info = "tiff", _plain_info(page)
            shape, dtype, file_axes = series.shape, series.dtype, series.axes
            store = series.aszarr(level=0)
            try:
                import zarr

                chunks = zarr.open(store, mode="r").chunks
            finally:
                store.close()
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError) as err:
        raise ValueError(f"cannot read {path} as a TIFF image ({err})") from err
    axes = _map_axes(file_axes)
    scale, units, names, extra = info
    scale = {a: float(v) for a, v in scale.items() if a in axes}
    units = {a: str(v) for a, v in units.items() if a in scale}
    if names is not None and ("C" not in axes or len(names) != shape[axes.index("C")]):
        names = None
    stat = path.stat()
    name = f"tiff-{dask.base.tokenize(str(path.resolve()), stat.st_mtime_ns, stat.st_size)}"
    data = da.from_array(_TiffArray(path.resolve(), shape, dtype), chunks=chunks, name=name,
                         meta=np.empty((0,) * len(shape), dtype))
    metadata = {"format": fmt, **extra}
    return ImageData(data=data, axes=axes, scale=scale, units=units,
                     channel_names=list(names) if names else None, metadata=metadata, path=path)


# --------------------------------------------------------------------------------------- writing


def _check_axes(axes: str, ndim: int) -> str:
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'ZYX', got {type(axes).__name__}")
    text = axes.strip().upper().replace("S", "C")
    if len(text) != ndim or len(set(text)) != len(text) or not text.isalpha():
        raise ValueError(f"axes {axes!r} must give one distinct letter per dimension of the {ndim}-D data")
    if "Y" not in text or "X" not in text:
        raise ValueError(f"axes {axes!r} must contain Y and X")
    return text


def _file_layout(axes: str, array: da.Array) -> tuple[str, da.Array, bool]:
    """(tifffile axes, array in that order, channels interleaved as samples?)."""
    samples = axes.endswith("YXC")
    tail = "YXC" if samples else "YX"
    order = [i for i, a in enumerate(axes) if a not in tail] + [axes.index(a) for a in tail]
    array = array.transpose(order)
    file_axes = "".join(axes[i] for i in order)
    return (file_axes[:-1] + "S" if samples else file_axes), array, samples


def _file_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind in "ui":
        return dtype
    raise ValueError(f"cannot write {dtype} data to TIFF; convert it to float32 or an integer type first")


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _ome_metadata(file_axes, scale, units, names, metadata) -> dict:
    meta: dict[str, Any] = {"axes": file_axes}
    for axis in "XYZ":
        if axis in scale:
            meta[f"PhysicalSize{axis}"] = float(scale[axis])
            meta[f"PhysicalSize{axis}Unit"] = units.get(axis, _MICRON)
    if "T" in scale:
        meta["TimeIncrement"], meta["TimeIncrementUnit"] = float(scale["T"]), units.get("T", "s")
    annotations = {k: _json(v) for k, v in (metadata or {}).items()}
    if names and "C" in file_axes:
        meta["Channel"] = {"Name": list(map(str, names))}
    elif names:  # interleaved samples are one OME channel: keep the names with our annotations
        annotations["channel_names"] = _json(list(map(str, names)))
    if annotations:
        meta["MapAnnotation"] = {"Namespace": OME_NAMESPACE, **annotations}
    return meta


def _imagej_metadata(file_axes, scale, units, names, metadata) -> dict:
    meta: dict[str, Any] = {"axes": file_axes}
    unit = units.get("X") or units.get("Y") or units.get("Z")
    if unit:
        meta["unit"] = "micron" if unit == _MICRON else unit
    if "Z" in scale:
        meta["spacing"] = float(scale["Z"])
    if "T" in scale:
        meta["finterval"] = float(scale["T"])
    props = {k: _json(v) for k, v in (metadata or {}).items()}
    if names:
        props["channel_names"] = _json(list(map(str, names)))
    if props:
        meta["Properties"] = props
    return meta


def _imagej_ok(file_axes: str, shape: tuple[int, ...], dtype: np.dtype, bigtiff: bool) -> bool:
    letters = iter(_IMAGEJ_AXES)
    in_order = all(a in letters for a in file_axes)  # a subsequence of TZCYXS
    rgb_ok = not file_axes.endswith("S") or (dtype == np.uint8 and shape[-1] == 3)  # ImageJ RGB: 3x8 bit
    return in_order and rgb_ok and dtype in _IMAGEJ_DTYPES and not bigtiff


def _pages(array: da.Array, page_ndim: int, progress, cancel) -> Iterator[np.ndarray]:
    """Pages in file order, computed a few at a time (one per cluster worker thread).

    The graph is optimised once and split into one task per page (``to_delayed``), so each page
    computes only what it needs and successive computes share identical keys (which a
    dask.distributed scheduler requires).
    """
    lead = array.ndim - page_ndim
    array = array.rechunk((1,) * lead + (-1,) * page_ndim)
    pages = array.to_delayed(optimize_graph=True).reshape(-1)
    page_shape = array.shape[lead:]
    batch = parallel_tasks()
    for first in range(0, len(pages), batch):
        raise_if_cancelled(cancel, "writing")
        group = pages[first : first + batch]
        for page in dask.compute(*group):
            yield np.asarray(page).reshape(page_shape)
        if progress is not None:
            progress(first + len(group), len(pages))


def write_image(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str,
    scale: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
    channel_names: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    cancel: CancelToken = None,
    bigtiff: bool | None = None,
) -> Path:
    """Write ``data`` (numpy or dask; float data as float32) to ``path``, page by page.

    ``scale``/``units``: physical pixel size per axis letter (e.g. ``{"Z": 0.5, "Y": 0.16}``,
    ``{"Y": "µm"}``). ``metadata``: JSON-serialisable items stored in the file (provenance under
    ``"napari_dgno"``). ``progress(done, total)`` counts pages; ``cancel`` is checked between pages
    and raises :class:`napari_dgno.engine.Cancelled`. ``bigtiff``: None decides from the size.
    Returns the path written.
    """
    path = Path(path).expanduser()
    name = path.name.lower()
    if not name.endswith(TIFF_SUFFIXES):
        raise ValueError(f"{path}: output must end in .tif, .tiff, .ome.tif or .ome.tiff")
    ome = name.endswith((".ome.tif", ".ome.tiff"))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist; create it first")
    check_cancel_token(cancel)
    array = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=-1)
    axes = _check_axes(axes, array.ndim)
    if any(n == 0 for n in array.shape):
        raise ValueError(f"cannot write an empty image (shape {tuple(array.shape)})")
    dtype = _file_dtype(array.dtype)
    array = array.astype(dtype, copy=False)
    if channel_names is not None and ("C" not in axes or len(channel_names) != array.shape[axes.index("C")]):
        raise ValueError(
            f"channel_names has {len(channel_names)} names but the data has "
            f"{array.shape[axes.index('C')] if 'C' in axes else 'no'} channels (axes {axes!r})"
        )
    file_axes, array, samples = _file_layout(axes, array)
    scale = {a: float(v) for a, v in (scale or {}).items() if a in axes}
    units = {a: str(v) for a, v in (units or {}).items() if a in axes}
    if bigtiff is None:
        bigtiff = array.size * dtype.itemsize > BIGTIFF_BYTES
    imagej = not ome and _imagej_ok(file_axes, array.shape, dtype, bigtiff)
    if ome:
        meta = _ome_metadata(file_axes, scale, units, channel_names, metadata)
    elif imagej:
        meta = _imagej_metadata(file_axes, scale, units, channel_names, metadata)
    else:
        meta = {"axes": file_axes, "scale": scale, "units": units, "channel_names": channel_names,
                **(metadata or {})}
        meta = json.loads(_json(meta))
    options: dict[str, Any] = {"photometric": "minisblack"}
    if samples:
        count = array.shape[-1]
        options = {"photometric": "rgb" if count in (3, 4) else "minisblack", "planarconfig": "contig"}
        if count == 4:
            options["extrasamples"] = ("unassalpha",)
    if "X" in scale and "Y" in scale:
        if imagej:
            options["resolution"] = (1.0 / scale["X"], 1.0 / scale["Y"])
        elif units.get("X", _MICRON) == _MICRON:
            options.update(resolution=(1e4 / scale["X"], 1e4 / scale["Y"]), resolutionunit="CENTIMETER")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, ome=ome, imagej=imagej) as writer:
            writer.write(
                _pages(array, 3 if samples else 2, progress, cancel), shape=array.shape, dtype=dtype,
                metadata=meta, **options,
            )
        if path.exists() and not overwrite:  # appeared while we were writing
            raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
