"""The one module that touches the private internals of other packages.

dicom_dask relies on a few names that pydicom, highdicom, dask, fsspec and
dicomweb-client do not publish (a leading underscore). Each is used here only, behind
a small public function that says which upstream versions it is known to work with
(`SHIMS`, checked by ``tests/package/test_compat.py`` on
every CI environment) and what happens when the private name is gone: a public-API
path giving the same result, or an
[`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError] naming the
package and its installed version. Every other module calls these functions
(``tests/package/test_upstream_privates.py`` checks it).

This module is importable by every stage: it imports pydicom only (a core
dependency of the lowest stage) at module level; highdicom, dask, fsspec and
dicomweb-client are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydicom.tag import BaseTag

from dicom_dask.errors import UnsupportedVersionError

__all__ = [
    "SHIMS",
    "PixelTransformParameters",
    "Shim",
    "TaskSpec",
    "character_set",
    "character_set_public",
    "combined_pixel_transform",
    "dask_meta",
    "dataset_json",
    "gcs_call",
    "installed_version",
    "jpeg_parameters",
    "jpeg_parameters_public",
    "pixel_transform_parameters",
    "raw_element",
    "requests_session",
    "rle_decode_frame",
    "rle_decode_frame_public",
    "rle_decode_segment",
    "rle_decode_segment_public",
    "s3_call",
    "strip_protocol",
    "task_spec",
]


@dataclass(frozen=True)
class Shim:
    """One use of an upstream private name.

    Attributes
    ----------
    package : str
        The distribution (as ``pip`` names it) whose private name is used.
    private : str
        The private name.
    versions : str
        The PEP 440 range of ``package`` the shim is known to work with.
    fallback : str
        What the shim does when the private name is missing.
    """

    package: str
    private: str
    versions: str
    fallback: str


#: Every shim of this module, by function name.
SHIMS: dict[str, Shim] = {
    "jpeg_parameters": Shim(
        "pydicom",
        "pydicom.pixels.utils._get_jpg_parameters",
        ">=3.0,<3.1",
        "jpeg_parameters_public (a scan of the codestream's markers)",
    ),
    "rle_decode_segment": Shim(
        "pydicom",
        "pydicom.pixels.decoders.rle._rle_decode_segment",
        ">=3.0,<3.1",
        "rle_decode_segment_public (imagecodecs.packbits_decode)",
    ),
    "rle_decode_frame": Shim(
        "pydicom",
        "pydicom.pixels.decoders.rle._decode_frame",
        ">=3.0,<3.1",
        "rle_decode_frame_public (pydicom's RLE decoder through get_decoder().as_buffer)",
    ),
    "raw_element": Shim(
        "pydicom",
        "pydicom.dataset.Dataset._dict",
        ">=3.0,<3.1",
        "Dataset.get_item(tag, keep_deferred=True)",
    ),
    "character_set": Shim(
        "pydicom",
        "pydicom.dataset.Dataset._character_set",
        ">=3.0,<3.1",
        "character_set_public (pydicom.charset.convert_encodings)",
    ),
    "combined_pixel_transform": Shim(
        "highdicom",
        "highdicom.image._CombinedPixelTransform",
        ">=0.25,<0.30",
        "UnsupportedVersionError",
    ),
    "pixel_transform_parameters": Shim(
        "highdicom",
        "_CombinedPixelTransform._effective_* / _invert / _color_type / _color_manager / "
        "_input_range_check",
        ">=0.25,<0.30",
        "UnsupportedVersionError",
    ),
    "task_spec": Shim(
        "dask",
        "dask._task_spec (Task, TaskRef, DataNode)",
        ">=2024.12.0",
        "dask.task_spec, public from dask 2025.1.0, is used first",
    ),
    "dask_meta": Shim(
        "dask",
        "dask.array.Array._meta",
        ">=2024.12.0",
        "dask.array.utils.meta_from_array",
    ),
    "requests_session": Shim(
        "dicomweb-client",
        "dicomweb_client.DICOMwebClient._session",
        ">=0.59,<1",
        "UnsupportedVersionError",
    ),
    "s3_call": Shim(
        "s3fs",
        "s3fs.S3FileSystem._call_s3",
        ">=2024.6",
        "UnsupportedVersionError (the caller asks info() instead)",
    ),
    "gcs_call": Shim(
        "gcsfs",
        "gcsfs.GCSFileSystem._call",
        ">=2024.6",
        "UnsupportedVersionError (the caller asks info() instead)",
    ),
    "strip_protocol": Shim(
        "fsspec",
        "fsspec.AbstractFileSystem._strip_protocol",
        ">=2024.6",
        "fsspec.core.strip_protocol (the URL's own protocol)",
    ),
}


def installed_version(package: str) -> str | None:
    """The installed version of the distribution ``package``, ``None`` if absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _unsupported(shim: str, detail: str) -> UnsupportedVersionError:
    info = SHIMS[shim]
    found = installed_version(info.package) or "not installed"
    return UnsupportedVersionError(
        f"{info.package} {found} has no {info.private} ({detail}); dicom_dask is known to "
        f"work with {info.package}{info.versions}"
    )


# -- pydicom ----------------------------------------------------------------------------


def jpeg_parameters(data: bytes) -> dict[str, Any]:
    """The parameters of a JPEG or JPEG-LS codestream's header.

    A dict with ``height``, ``width``, ``precision``, ``components``,
    ``component_ids`` (list of int) and, when the header has APPn segments, ``app``
    (marker bytes to segment payload); empty when ``data`` does not parse. pydicom's own parser
    (``_get_jpg_parameters``, pydicom >=3.0,<3.1), else
    [`jpeg_parameters_public`][dicom_dask.compat.jpeg_parameters_public].
    """
    try:
        from pydicom.pixels.utils import _get_jpg_parameters
    except ImportError:
        return jpeg_parameters_public(data)
    return _get_jpg_parameters(data)


_SOF = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}) | {0xF7}  # 0xF7: JPEG-LS


def jpeg_parameters_public(data: bytes) -> dict[str, Any]:
    """[`jpeg_parameters`][dicom_dask.compat.jpeg_parameters] read from the markers
    (ISO/IEC 10918-1 B.1, ISO/IEC 14495-1 C.2.2) up to the first scan."""
    out: dict[str, Any] = {}
    app: dict[bytes, bytes] = {}
    if data[:2] != b"\xff\xd8":
        return {}
    pos = 2
    try:
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return {}
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            payload = data[pos + 4 : pos + 2 + length]
            if 0xE0 <= marker <= 0xEF:
                app[bytes(data[pos : pos + 2])] = bytes(payload)
            elif marker in _SOF:
                precision, height, width, n = struct.unpack(">BHHB", payload[:6])
                out.update(precision=precision, height=height, width=width, components=n)
                out["component_ids"] = [payload[6 + 3 * i] for i in range(n)]
            elif marker == 0xDA:  # start of scan: the header is over
                break
            pos += 2 + length
    except (struct.error, IndexError):
        return {}
    if out and app:
        out["app"] = app
    return out


def rle_decode_segment(data: bytes) -> bytes | bytearray:
    """One decoded RLE Lossless segment (DICOM PS3.5 G.3.1, PackBits).

    pydicom's ``_rle_decode_segment`` (pydicom >=3.0,<3.1), else
    [`rle_decode_segment_public`][dicom_dask.compat.rle_decode_segment_public].
    """
    try:
        from pydicom.pixels.decoders.rle import _rle_decode_segment
    except ImportError:
        return rle_decode_segment_public(data)
    return _rle_decode_segment(data)


def rle_decode_segment_public(data: bytes) -> bytes:
    """[`rle_decode_segment`][dicom_dask.compat.rle_decode_segment] through
    imagecodecs' public ``packbits_decode`` (the ``fast`` extra)."""
    try:
        import imagecodecs
    except ImportError:
        raise _unsupported(
            "rle_decode_segment", "and imagecodecs, which would replace it, is not installed"
        ) from None
    return bytes(imagecodecs.packbits_decode(data))


def rle_decode_frame(src: bytes, runner: Any) -> bytes | bytearray | memoryview:
    """pydicom's pure-Python RLE decoding of one frame inside a decoding plugin.

    ``runner`` is the plugin's ``DecodeRunner``; like pydicom's plugin, this sets its
    ``planar_configuration`` to 1 (the layout of the returned bytes). pydicom's
    ``pydicom.pixels.decoders.rle._decode_frame`` (pydicom >=3.0,<3.1), else
    [`rle_decode_frame_public`][dicom_dask.compat.rle_decode_frame_public].
    """
    try:
        from pydicom.pixels.decoders.rle import _decode_frame
    except ImportError:
        return rle_decode_frame_public(src, runner)
    return _decode_frame(src, runner)


_RUNNER_OPTIONS = (
    "rows",
    "columns",
    "samples_per_pixel",
    "bits_allocated",
    "bits_stored",
    "pixel_representation",
    "photometric_interpretation",
    "rle_segment_order",
)


def rle_decode_frame_public(src: bytes, runner: Any) -> bytes | bytearray | memoryview:
    """[`rle_decode_frame`][dicom_dask.compat.rle_decode_frame] through pydicom's
    public decoder interface (``get_decoder(RLELossless).as_buffer`` with its own
    ``pydicom`` plugin)."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import RLELossless

    options = {k: runner.get_option(k) for k in _RUNNER_OPTIONS}
    options = {k: v for k, v in options.items() if v is not None}
    buffer, _ = get_decoder(RLELossless).as_buffer(
        encapsulate([src]),
        decoding_plugin="pydicom",
        number_of_frames=1,
        planar_configuration=runner.get_option("planar_configuration", 0),
        **options,
    )
    runner.set_option("planar_configuration", 1)
    return buffer


def raw_element(ds: Any, tag: int) -> Any:
    """The element ``tag`` of the pydicom dataset ``ds`` as stored, without pydicom
    converting a raw element's value (``None`` if absent).

    Reads the dataset's element dict (``Dataset._dict``, pydicom >=3.0,<3.1), else
    the public ``Dataset.get_item(tag, keep_deferred=True)``.
    """
    try:
        elements = ds._dict
    except AttributeError:
        return ds.get_item(tag, keep_deferred=True)
    return elements.get(BaseTag(tag))


def character_set(ds: Any) -> str | list[str]:
    """The Python codec names of the dataset's *Specific Character Set*, as
    ``dcmread`` records in ``set_original_encoding`` (pydicom's default encoding
    when absent).

    ``Dataset._character_set`` (pydicom >=3.0,<3.1), else the same computed with
    ``pydicom.charset.convert_encodings``.
    """
    try:
        return ds._character_set
    except AttributeError:
        return character_set_public(ds)


def character_set_public(ds: Any) -> str | list[str]:
    """[`character_set`][dicom_dask.compat.character_set] with
    ``pydicom.charset.convert_encodings`` (the dataset's own encoding only: a nested
    dataset without *Specific Character Set* gets pydicom's default, not its
    parent's)."""
    from pydicom.charset import convert_encodings, default_encoding

    if "SpecificCharacterSet" not in ds:
        return default_encoding
    return convert_encodings(ds.SpecificCharacterSet)


# -- highdicom ----------------------------------------------------------------------


def combined_pixel_transform(ds: Any, frame_index: int, **options: Any) -> Any:
    """highdicom's pixel transform of ``frame_index`` (0-based) of ``ds``: a callable
    mapping a frame's stored values to the output ``highdicom.Image.get_frame``
    gives with the same ``options`` (``output_dtype``, ``apply_voi_transform``, ...).

    ``highdicom.image._CombinedPixelTransform`` (highdicom >=0.25,<0.30); raises
    [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError] when it
    is missing. Errors highdicom raises on the dataset pass through.
    """
    try:
        from highdicom.image import _CombinedPixelTransform
    except ImportError:
        raise _unsupported("combined_pixel_transform", "the per-frame pixel transform") from None
    return _CombinedPixelTransform(ds, frame_index, **options)


@dataclass(frozen=True)
class PixelTransformParameters:
    """What a [`combined_pixel_transform`][dicom_dask.compat.combined_pixel_transform]
    resolved from the dataset.

    Attributes
    ----------
    slope_intercept : tuple of float or None
        The linear rescale it applies (modality or real world value map).
    window_center_width : tuple of float or None
        The VOI window it applies, moved onto stored values.
    voi_function : object
        The VOI LUT function of that window (``None`` without one).
    has_lut : bool
        Whether it applies a lookup table.
    invert : bool
        Whether the presentation LUT inverts the output.
    color_type : str
        highdicom's colour type of the image (ends with ``MONOCHROME``, ``.COLOR``,
        ``PALETTE_COLOR``).
    color_manager : object
        highdicom's ICC colour manager, ``None`` without ICC profile correction.
    input_range_check : tuple of int or None
        The stored range it checks its input against.
    applies_to_all_frames : bool
        Whether the same transform holds for every frame.
    """

    slope_intercept: tuple[float, float] | None
    window_center_width: tuple[float, float] | None
    voi_function: Any
    has_lut: bool
    invert: bool
    color_type: str
    color_manager: Any
    input_range_check: tuple[int, int] | None
    applies_to_all_frames: bool


def pixel_transform_parameters(transform: Any) -> PixelTransformParameters:
    """The resolved parameters of a highdicom transform built by
    [`combined_pixel_transform`][dicom_dask.compat.combined_pixel_transform].

    Read from its private attributes (highdicom >=0.25,<0.30); raises
    [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError] when one
    is missing.
    """
    try:
        return PixelTransformParameters(
            slope_intercept=transform._effective_slope_intercept,
            window_center_width=transform._effective_window_center_width,
            voi_function=transform._effective_voi_function,
            has_lut=transform._effective_lut_data is not None,
            invert=bool(transform._invert),
            color_type=str(transform._color_type),
            color_manager=transform._color_manager,
            input_range_check=transform._input_range_check,
            applies_to_all_frames=bool(transform.applies_to_all_frames),
        )
    except AttributeError as exc:
        raise _unsupported("pixel_transform_parameters", str(exc)) from None


# -- dask -------------------------------------------------------------------------------


class TaskSpec(NamedTuple):
    """dask's task classes (``Task(key, func, *args)``, ``TaskRef(key)``,
    ``DataNode(key, value)``)."""

    Task: Any
    TaskRef: Any
    DataNode: Any


@functools.cache
def task_spec() -> TaskSpec:
    """dask's task specification classes (dask >=2024.12.0): the public
    ``dask.task_spec`` (dask >=2025.1.0), else the private ``dask._task_spec`` (dask
    2024.12); raises
    [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError] on an
    older dask."""
    try:
        from dask.task_spec import DataNode, Task, TaskRef
    except ImportError:
        try:
            from dask._task_spec import DataNode, Task, TaskRef
        except ImportError:
            raise _unsupported("task_spec", "tasks as Task objects") from None
    return TaskSpec(Task, TaskRef, DataNode)


def dask_meta(array: Any) -> Any:
    """The empty array of the dask array's block type and dtype (its ``_meta``, dask
    >=2024.12.0), else ``dask.array.utils.meta_from_array``."""
    try:
        return array._meta
    except AttributeError:
        from dask.array.utils import meta_from_array

        return meta_from_array(array)


# -- fsspec, dicomweb-client --------------------------------------------------------


def requests_session(client: Any) -> Any:
    """The ``requests.Session`` a dicomweb-client ``DICOMwebClient`` sends its
    requests with (its authentication, headers and hooks), for a request the client
    has no method for (reading a reply's headers only).

    ``DICOMwebClient._session`` (dicomweb-client >=0.59,<1); raises
    [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError] when it
    is missing.
    """
    try:
        return client._session
    except AttributeError:
        raise _unsupported(
            "requests_session", f"a {type(client).__name__} without an HTTP session"
        ) from None


def strip_protocol(fs: Any, path: str) -> str:
    """``path`` as the filesystem ``fs`` (an fsspec filesystem or its class) names it:
    without its protocol (``file://``, ``s3://``) and with the filesystem's own
    normalisation.

    ``AbstractFileSystem._strip_protocol`` (fsspec >=2024.6), else
    ``fsspec.core.strip_protocol`` (the URL's own protocol).
    """
    strip: Callable[[str], str] | None = getattr(fs, "_strip_protocol", None)
    if strip is None:
        from fsspec.core import strip_protocol as public

        return public(path)
    return strip(path)


async def s3_call(fs: Any, method: str, **kwargs: Any) -> Any:
    """Await the botocore ``method`` (``"get_object"``...) through the s3fs filesystem
    ``fs``, with its credentials, retries and event loop; returns botocore's reply.

    ``S3FileSystem._call_s3`` (s3fs >=2024.6): s3fs's public ``cat_file`` returns the
    bytes only, not the reply's ``ContentRange`` and ``ETag`` that let one ranged GET
    open a file. Missing: [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError].
    """
    call = getattr(fs, "_call_s3", None)
    if call is None:
        raise _unsupported("s3_call", f"a {type(fs).__name__} without _call_s3")
    return await call(method, **kwargs)


async def gcs_call(fs: Any, method: str, url: str, **kwargs: Any) -> tuple[Any, bytes]:
    """Await one HTTP request of the gcsfs filesystem ``fs`` (its session and
    credentials); returns ``(reply headers, body)``.

    ``GCSFileSystem._call`` (gcsfs >=2024.6), for the reply's ``Content-Range`` and
    ``x-goog-generation`` that ``cat_file`` does not return. Missing:
    [`UnsupportedVersionError`][dicom_dask.errors.UnsupportedVersionError].
    """
    call = getattr(fs, "_call", None)
    if call is None:
        raise _unsupported("gcs_call", f"a {type(fs).__name__} without _call")
    reply, data = await call(method, url, **kwargs)
    return reply, data


#: Held around ``Dataset.to_json_dict(suppress_invalid_tags=True)``: see `dataset_json`.
_JSON_LOCK = threading.Lock()


def dataset_json(ds: Any, **options: Any) -> dict[str, Any]:
    """``ds.to_json_dict(**options)``, safe to call from several threads at once.

    With ``suppress_invalid_tags=True`` pydicom 3.0 wraps the conversion in
    ``config.strict_reading()``, which sets the process-wide reading validation mode and
    restores the value it found: two threads converting at once can leave the mode at
    ``RAISE`` for the rest of the process (every later invalid value then raises
    instead of warning). The conversions are serialised here; they are a small part of
    an open.
    """
    if not options.get("suppress_invalid_tags"):
        return dict(ds.to_json_dict(**options))
    with _JSON_LOCK:
        return dict(ds.to_json_dict(**options))
