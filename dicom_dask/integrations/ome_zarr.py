"""``to_ome_zarr``: a slide, a volume or any computed array to an OME-Zarr pyramid.

The pyramid is built where the pixels are: one dask task per block of the input
writes that block's chunks of level 0, halves it in place (2 x 2 mean for images and
float maps, 2 x 2 mode for integer label maps) and writes the levels below while
whole chunks fit in the block; only the small remainder (a sixteenth of the block or
less) goes on to the next, much smaller, stage. No full-resolution pixels pass
through the scheduler, the graph has one task per input block, and the tasks run on
whatever scheduler is active (a `distributed.Client`'s workers, which open the
destination themselves, or dask's threads).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.errors import DestinationExistsError, LayoutError
from dicom_dask.frames.storage import canonical_url, redact, resolve_fs
from dicom_dask.images.level import Level
from dicom_dask.images.ome import NGFF_VERSION, NGFF_VERSION_V2, NGFF_VERSIONS
from dicom_dask.images.slide import Slide
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.downsample import METHODS, downsample
from dicom_dask.integrations.ome_zarr_pyramid import Target, open_store, pyramid_graph
from dicom_dask.integrations.writers import options as write_options
from dicom_dask.integrations.writers.credentials import shipped_storage_options
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array
    import zarr

__all__ = ["downsample", "to_ome_zarr"]

#: Edge of a written chunk along y and x, in pixels, when the input's blocks suggest none.
CHUNK_EDGE = 1024


# -- what is written: axes, geometry ---------------------------------------------------------
@dataclass(frozen=True)
class _Image:
    """The input in NGFF axis order, with the geometry of level 0."""

    array: Any  # dask array, axes as ``axes``
    axes: tuple[str, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    unit: str
    labels: bool
    source: Any = None  # Slide, Level or Volume whose header keep_identifiers may copy
    extra: dict[str, Any] = field(default_factory=dict)


def _as_dask(data: Any) -> dask.array.Array:
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    array = np.asarray(data)
    return da.from_array(array, chunks=tuple(n if n <= 4 else 2048 for n in array.shape))


def _axes(shape: tuple[int, ...], kind: str | None, spacing: Sequence[float] | None) -> str:
    """Axis letters of the input (``s``: samples, moved to the front as ``c``)."""
    ndim = len(shape)
    if ndim == 2:
        return "yx"
    if ndim == 3:
        if kind == "volume" or (kind is None and spacing is not None and len(spacing) == 3):
            return "zyx"
        if shape[-1] in (3, 4) and shape[0] > 4:
            return "yxs"
        return "cyx"
    if ndim == 4:
        return "zyxc" if kind == "volume" else "czyx"
    raise LayoutError(
        f"an array of shape {shape}: expected (y, x), (y, x, samples), (c, y, x), (z, y, x) "
        "or (c, z, y, x); pass one optical path or focal plane of a slide level"
    )


def _unwrap(data: Any, like: Any) -> tuple[Any, Any]:
    """The pixels of ``data`` and the object that gives the geometry."""
    if isinstance(data, Slide):
        return data.pyramid[0].array, like if like is not None else data
    if isinstance(data, Level):
        return data.array, like if like is not None else data
    if isinstance(data, Volume):
        return data.array, like if like is not None else data
    if like is not None and not isinstance(like, Slide | Level | Volume):
        raise LayoutError(f"like= is a {type(like).__name__}: expected a Slide, Level or Volume")
    return data, like


def _slide_spacing(
    yx: tuple[int, int], like: Slide | Level, given: Sequence[float] | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(spacing, translation) in µm of a result of ``yx`` pixels over ``like``."""
    levels = like.pyramid if isinstance(like, Slide) else (like,)
    base = levels[0].pixel_spacing
    if given is not None:
        if len(given) != 2:
            raise LayoutError(f"pixel_spacing={tuple(given)}: expected (row, column) spacing in mm")
        spacing = (float(given[0]), float(given[1]))
    else:
        found = [lv.pixel_spacing for lv in levels if tuple(lv.matrix_shape) == tuple(yx)]
        if not found or found[0] is None:
            shapes = ", ".join(f"{lv.matrix_shape[0]} x {lv.matrix_shape[1]}" for lv in levels)
            raise LayoutError(
                f"the data is {yx[0]} x {yx[1]} pixels, no level of like= is (its levels: "
                f"{shapes}); pass pixel_spacing=(row, column) in mm for a result coarser "
                "than level 0"
            )
        spacing = found[0]
    base = base or spacing
    um = (spacing[0] * 1000.0, spacing[1] * 1000.0)
    shift = ((spacing[0] - base[0]) * 500.0, (spacing[1] - base[1]) * 500.0)
    return um, shift


def _volume_spacing(
    zyx: tuple[int, ...], like: Volume, given: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(spacing, translation) in mm along slice, row, column of a result over ``like``."""
    if given is not None:
        if len(given) != 3:
            raise LayoutError(f"pixel_spacing={tuple(given)}: expected (slice, row, column) in mm")
        spacing = tuple(float(v) for v in given)
    elif tuple(zyx) != tuple(like.spatial_shape):
        raise LayoutError(
            f"the data is {zyx}, like= is a volume of {like.spatial_shape} voxels; pass "
            "pixel_spacing=(slice, row, column) in mm for a coarser result"
        )
    else:
        spacing = like.spacing
    origin = like.affine[:3, 3]
    translation = tuple(float(origin @ like.direction[:, axis]) for axis in range(3))
    return spacing, translation


def _image(data: Any, like: Any, pixel_spacing: Sequence[float] | None) -> _Image:
    """``data`` in NGFF order (``[c][z]yx``), with its level-0 scale and translation."""
    pixels, like = _unwrap(data, like)
    kind = None if like is None else ("volume" if isinstance(like, Volume) else "slide")
    if hasattr(pixels, "ndim") and pixels.ndim == 5:
        raise LayoutError(
            f"a slide level of shape {tuple(pixels.shape)} (optical paths, focal planes, y, x, "
            "samples): pass one optical path and focal plane, e.g. level.array[0, 0]"
        )
    array = _as_dask(pixels)
    letters = _axes(tuple(array.shape), kind, pixel_spacing)
    if "s" in letters or letters == "zyxc":
        first = letters.index("s" if "s" in letters else "c")
        order = (first, *(i for i, a in enumerate(letters) if a in "zyx"))
        array = array.transpose(order)
        letters = "c" + letters.replace("s", "").replace("c", "")
    spatial = tuple(int(array.shape[letters.index(a)]) for a in letters if a in "zyx")
    if kind == "volume":
        if "z" not in letters:
            raise LayoutError(f"like= is a volume, the data is {letters} {tuple(array.shape)}")
        spacing, shift = _volume_spacing(spatial, like, pixel_spacing)
        unit = "millimeter"
    elif kind == "slide":
        if "z" in letters:
            raise LayoutError(f"like= is a slide, the data has a z axis: {tuple(array.shape)}")
        spacing, shift = _slide_spacing(spatial[-2:], like, pixel_spacing)  # type: ignore[arg-type]
        unit = "micrometer"
    elif pixel_spacing is None:
        raise LayoutError(
            f"an array of shape {tuple(array.shape)} without like=: pass like= (the Slide or "
            "Volume it was computed from) or pixel_spacing= (mm)"
        )
    else:
        n = len(spatial)
        if len(pixel_spacing) != n:
            raise LayoutError(f"pixel_spacing={tuple(pixel_spacing)}: expected {n} values (mm)")
        unit = "micrometer" if n == 2 else "millimeter"
        factor = 1000.0 if n == 2 else 1.0
        spacing = tuple(float(v) * factor for v in pixel_spacing)
        shift = (0.0,) * n
    scale, translation = [1.0] * len(letters), [0.0] * len(letters)
    where = [i for i, a in enumerate(letters) if a != "c"]
    for i, step, start in zip(where, spacing, shift, strict=True):
        scale[i], translation[i] = float(step), float(start)
    is_source = isinstance(data, Slide | Level | Volume)
    labels = not is_source and "c" not in letters and array.dtype.kind in "iub"
    return _Image(
        array=array,
        axes=tuple(letters),
        scale=tuple(scale),
        translation=tuple(translation),
        unit=unit,
        labels=labels,
        source=like,
    )


# -- the destination ------------------------------------------------------------------------
def _check_destination(url: str, storage_options: StorageOptions, overwrite: bool) -> None:
    if overwrite:
        return
    if "://" not in url:
        taken = os.path.isfile(url) or (os.path.isdir(url) and bool(os.listdir(url)))
    else:
        fs, path = resolve_fs(url, storage_options)
        taken = fs.exists(path) and (fs.isfile(path) or bool(fs.ls(path)))
    if taken:
        raise DestinationExistsError(
            f"{redact(url)} already exists and is not empty; pass overwrite=True to replace it"
        )


def _own_levels(data: Any, image: _Image, levels: int) -> list[dask.array.Array]:
    """A slide's own levels 1, 2... that are exactly the halves of level 0 (rounded up), in
    NGFF order: they are written as they are instead of being computed."""
    if not isinstance(data, Slide) or (image.axes[0] != "c" and image.array.ndim != 2):
        return []
    found = []
    for k, level in enumerate(data.pyramid[1:levels], start=1):
        pixels = level.array
        if pixels.ndim != data.pyramid[0].array.ndim:
            break
        if image.axes[0] == "c" and pixels.ndim == 3:
            pixels = pixels.transpose(2, 0, 1)
        if tuple(pixels.shape) != _level_shape(tuple(image.array.shape), k):
            break
        found.append(pixels)
    return found


# -- metadata -------------------------------------------------------------------------------
def _chunk_edges(array: dask.array.Array, chunks: int | Sequence[int] | None) -> tuple[int, int]:
    """Edge of the written chunks along y and x.

    By default the largest half, quarter... of the input's blocks that is at most
    ``CHUNK_EDGE``, so that each task writes several levels without any rechunk.
    """
    edges = []
    for i, axis in enumerate((-2, -1)):
        size = int(array.shape[axis])
        if chunks is not None:
            given = chunks if isinstance(chunks, int) else chunks[i]
            if int(given) < 1:
                raise LayoutError(f"chunks={chunks!r}: expected a positive chunk edge")
            edge = int(given)
        else:
            block = int(array.chunks[axis][0])
            edge = block
            while edge > CHUNK_EDGE and edge % 2 == 0 and edge // 2 >= 256:
                edge //= 2
            if edge > CHUNK_EDGE or edge < 64:  # odd, small or huge blocks: a plain edge
                edge = CHUNK_EDGE
        edge = min(edge, size)
        if edge % 2 and edge < size:
            edge += 1
        edges.append(edge)
    return edges[0], edges[1]


def _level_count(levels: int | None, shape: tuple[int, int], edges: tuple[int, int]) -> int:
    if levels is None:
        halvings = max(math.ceil(math.log2(max(shape[0] / edges[0], shape[1] / edges[1], 1))), 0)
        return 1 + halvings
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise LayoutError(f"levels={levels!r}: expected a number of levels >= 1")
    return levels


def _level_shape(shape: tuple[int, ...], level: int) -> tuple[int, ...]:
    factor = 1 << level
    return (*shape[:-2], -(-shape[-2] // factor), -(-shape[-1] // factor))


def _multiscales(image: _Image, levels: int, method: str, version: str) -> dict[str, Any]:
    """The OME-NGFF ``multiscales`` (and ``omero``) attributes of the group."""
    axes = [
        {"name": a, "type": "channel"}
        if a == "c"
        else {"name": a, "type": "space", "unit": image.unit}
        for a in image.axes
    ]
    datasets = []
    for k in range(levels):
        factor = 1 << k
        yx = [i >= len(image.axes) - 2 for i in range(len(image.axes))]
        scale = [s * factor if on else s for s, on in zip(image.scale, yx, strict=True)]
        translation = [
            t + (factor - 1) / 2 * s if on else t
            for t, s, on in zip(image.translation, image.scale, yx, strict=True)
        ]
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        )
    multiscale: dict[str, Any] = {
        "name": "labels" if image.labels else "image",
        "axes": axes,
        "datasets": datasets,
        "type": method,
        "metadata": {
            "description": f"2 x 2 {method} of the level above (y and x halved, rounded up)",
            "method": "dicom_dask.integrations.ome_zarr.downsample",
            "kwargs": {"method": method},
        },
    }
    omero = _omero(image)
    if version == NGFF_VERSION_V2:
        multiscale = {"version": NGFF_VERSION_V2, **multiscale}
        return {"multiscales": [multiscale], **({"omero": omero} if omero else {})}
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [multiscale],
            **({"omero": omero} if omero else {}),
        }
    }


def _omero(image: _Image) -> dict[str, Any] | None:
    """Channel colours of an RGB(A) image."""
    if image.axes[0] != "c" or image.array.shape[0] not in (3, 4) or image.array.dtype != np.uint8:
        return None
    names = ("red", "green", "blue", "alpha")
    colors = ("FF0000", "00FF00", "0000FF", "FFFFFF")
    channels = [
        {
            "label": names[i],
            "color": colors[i],
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
            "window": {"min": 0.0, "max": 255.0, "start": 0.0, "end": 255.0},
        }
        for i in range(image.array.shape[0])
    ]
    return {"channels": channels, "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}


def _identifiers(source: Any) -> dict[str, Any]:
    """The source's header (no pixel data) and URLs, for ``keep_identifiers=True``."""
    dataset = None
    urls: list[str] = []
    if isinstance(source, Slide | Level):
        level = source.pyramid[0] if isinstance(source, Slide) else source
        dataset, urls = level.image.dataset, [redact(u) for u in level.urls]
    elif isinstance(source, Volume) and source.sources is not None and len(source.sources[0]):
        dataset = source.sources[0][0]
        urls = [redact(str(u)) for u in source.sources[2][:1]]
    if dataset is None:
        return {}
    from pydicom import Dataset

    kept = Dataset()
    for element in dataset:
        if element.tag != 0x7FE00010 and element.VR not in ("OB", "OW", "OF", "OD", "OL", "UN"):
            kept.add(element)
    return {"header": kept.to_json_dict(), "urls": urls}


def _compressors(compressor: Any, zarr_format: int) -> Any:
    if compressor is None:
        return None
    if not isinstance(compressor, str):
        return compressor
    if zarr_format == 2:
        import numcodecs

        v2 = {
            "zstd": numcodecs.Zstd(level=3),
            "blosc": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE),
        }
        found = v2.get(compressor)
    else:
        from zarr.codecs import BloscCodec, ZstdCodec

        v3 = {
            "zstd": ZstdCodec(level=3),
            "blosc": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        }
        found = v3.get(compressor)
    if found is None:
        raise LayoutError(f"compressor={compressor!r}: expected 'zstd', 'blosc', None or a codec")
    return found


def _create(
    url: str,
    storage_options: StorageOptions,
    image: _Image,
    *,
    levels: int,
    edges: tuple[int, int],
    compressor: Any,
    zarr_format: int,
    attributes: Mapping[str, Any],
) -> zarr.Group:
    """The group and its empty level arrays (metadata only)."""
    import zarr

    group = zarr.open_group(
        open_store(url, storage_options),
        mode="w",
        zarr_format=3 if zarr_format == 3 else 2,
    )
    group.attrs.update(dict(attributes))
    shape = tuple(int(n) for n in image.array.shape)
    for k in range(levels):
        level_shape = _level_shape(shape, k)
        chunk = tuple(
            min(edges[i - len(shape) + 2], n)
            if i >= len(shape) - 2
            else (n if a == "c" and n <= 4 and len(image.array.chunks[i]) == 1 else 1)
            for i, (a, n) in enumerate(zip(image.axes, level_shape, strict=True))
        )
        group.create_array(
            str(k),
            shape=level_shape,
            chunks=chunk,
            dtype=image.array.dtype,
            compressors=_compressors(compressor, zarr_format),
            fill_value=0,
            dimension_names=image.axes if zarr_format == 3 else None,
        )
    return group


# -- the writer -------------------------------------------------------------------------------
def to_ome_zarr(
    data: Any,
    dest: str | os.PathLike[str],
    *,
    like: Slide | Level | Volume | None = None,
    levels: int | None = None,
    method: str | None = None,
    pixel_spacing: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = None,
    compressor: Any = "zstd",
    storage_options: StorageOptions = None,
    overwrite: bool = False,
    progress: bool | None = None,
    ngff_version: str = NGFF_VERSION,
    keep_identifiers: bool = False,
    options: write_options.WriteOptions | Mapping[str, Any] | None = None,
) -> zarr.Group:
    """Write ``data`` as an OME-Zarr multiscale image, building the pyramid in dask tasks.

    Each task holds one block of the input: it writes the block's chunks of level 0,
    halves the block and writes the levels below while whole chunks fit, and hands a
    block a sixteenth the size (or less) to the next, smaller stage. The tasks run on
    the active scheduler: a `distributed.Client`'s workers open the destination and
    write themselves; dask's threads otherwise.

    Parameters
    ----------
    data : Slide, Level, Volume, dask or NumPy array
        A [`Slide`][dicom_dask.images.slide.Slide] (its level 0; its own levels that
        are exact halves of the one above are copied, not recomputed), a
        [`Level`][dicom_dask.images.level.Level], a
        [`Volume`][dicom_dask.images.volume.Volume], or an array computed from one: a
        2-D label or float map ``(y, x)``, RGB ``(y, x, 3)``, ``(c, y, x)``,
        ``(z, y, x)`` or ``(c, z, y, x)``, at level 0's resolution or coarser.
    dest : str or path
        The group to write: a local path or an fsspec URL (``s3://bucket/out.ome.zarr``).
    like : Slide, Level or Volume, optional
        What ``data`` was computed from: gives the axes, units (micrometre for slides,
        millimetre for volumes), scale and translation (a volume's origin projected on
        its axes). Default: ``data`` itself when it is a Slide, Level or Volume.
    levels : int, optional
        Number of levels, each half the size of the one above along y and x (z and
        channels are kept). Default: halve until a level fits in one chunk (for a
        Slide, at least its own number of levels).
    method : {"mean", "mode", "nearest"}, optional
        How a level is made from the one above: 2 x 2 mean (default for images, float
        maps and volumes), the most frequent value (default for integer label maps) or
        the top-left pixel.
    pixel_spacing : sequence of float, optional
        Spacing of ``data`` in mm: ``(row, column)`` (slides), ``(slice, row, column)``
        (volumes). Needed for a result coarser than every level of ``like`` (a
        patch-score map), or without ``like``.
    chunks : int or (int, int), optional
        Edge of the written chunks along y and x. Default: the input's blocks halved
        until at most 1024 pixels, so each task writes whole chunks of several levels.
    compressor : {"zstd", "blosc", None} or codec
        Compression of the chunks.
    storage_options : mapping or callable, optional
        fsspec options of ``dest``, or a filesystem factory. A mapping (credentials)
        is not put in the task graph: it reaches the workers of the active client
        through a worker plugin for the time of the write.
    overwrite : bool
        Replace what is at ``dest`` (also ``options.overwrite``; otherwise a non-empty
        ``dest`` raises [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError]).
    progress : bool, optional
        Show dask's progress bar, without a client (default: ``options.progress``, true).
    ngff_version : {"0.5", "0.4"}
        OME-NGFF 0.5 (zarr v3) or 0.4 (zarr v2, for tools that read only 0.4).
    keep_identifiers : bool
        Also store the source's DICOM header (without pixel data) and URLs in the
        group's ``dicom_dask`` attributes (also ``options.keep_identifiers``). By
        default nothing of the source's header is written.
    options : WriteOptions or mapping, optional
        The options every writer shares
        ([`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions]):
        ``storage_options``, ``overwrite``, ``progress`` and ``keep_identifiers`` apply
        here; the keywords of the same names given here take precedence.

    Returns
    -------
    zarr.Group
        The written group.
    """
    if ngff_version not in NGFF_VERSIONS:
        raise LayoutError(
            f"ngff_version={ngff_version!r}: expected '0.5' (zarr v3) or '0.4' (zarr v2)"
        )
    if not isinstance(dest, str | os.PathLike):
        raise LayoutError(f"dest is a {type(dest).__name__}: expected a path or an fsspec URL")
    opts = write_options.WriteOptions.coerce(
        options,
        storage_options=storage_options,
        overwrite=overwrite or None,
        progress=progress,
        keep_identifiers=keep_identifiers or None,
    )
    storage_options, overwrite = opts.storage_options, opts.overwrite
    image = _image(data, like, pixel_spacing)
    method = method or ("mode" if image.labels else "mean")
    if method not in METHODS:
        raise LayoutError(f"method={method!r}: expected one of {METHODS}")
    edges = _chunk_edges(image.array, chunks)
    count = _level_count(levels, tuple(image.array.shape[-2:]), edges)
    if levels is None and isinstance(data, Slide):  # at least the slide's own levels
        count = max(count, len(data.pyramid))
    url = canonical_url(dest)
    zarr_format = 3 if ngff_version == NGFF_VERSION else 2
    _check_destination(url, storage_options, overwrite)
    attributes = _multiscales(image, count, method, ngff_version)
    if opts.keep_identifiers:
        attributes["dicom_dask"] = _identifiers(image.source)
    group = _create(
        url,
        storage_options,
        image,
        levels=count,
        edges=edges,
        compressor=compressor,
        zarr_format=zarr_format,
        attributes=attributes,
    )
    client = write_options.active_client()
    with shipped_storage_options(url, storage_options, client=client) as shipped:
        zstd = 3 if compressor == "zstd" else None if compressor is None else -1
        skip_empty = image.labels or image.array.dtype.kind == "f"
        target = Target(url, shipped, secrets.token_hex(8), zarr_format, zstd, skip_empty)
        given = [image.array, *_own_levels(data, image, count)]
        graphs = [
            pyramid_graph(
                given[k], target=target, levels=k + 1, edges=edges, method=method, start=k
            )
            for k in range(len(given) - 1)
        ]
        last = len(given) - 1
        graphs.append(
            pyramid_graph(
                given[last], target=target, levels=count, edges=edges, method=method, start=last
            )
        )
        write_options.compute(*graphs, progress=opts.progress)
    return group
