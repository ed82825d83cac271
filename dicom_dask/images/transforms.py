"""Pixel transforms, per chunk: stored values -> meaningful pixels.

The chain and its tri-state switches are highdicom's (``Image.get_frames``): real
world value mapping, modality transform (rescale or Modality LUT), VOI (windows
with LINEAR / LINEAR_EXACT / SIGMOID, or VOI LUT, selectable), presentation LUT /
MONOCHROME1 inversion, palette colour LUT, ICC profile. Each frame's transform is
highdicom's own ``_CombinedPixelTransform`` built from the header dataset, so the
results are highdicom's by construction; this module only decides which frame's
parameters reach which part of a chunk. Nothing here imports dask.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.compat import combined_pixel_transform, pixel_transform_parameters
from dicom_dask.errors import DicomDaskError

__all__ = [
    "FrameTransformer",
    "TransformError",
    "TransformOptions",
    "apply_block",
    "dataset_key",
    "voi_choices",
    "with_dose_scaling",
]

#: Attributes whose values change a frame's pixel transform.
TRANSFORM_KEYWORDS = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
    "RealWorldValueMappingSequence",
    "ICCProfile",
    "OpticalPathSequence",
    "RedPaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SharedFunctionalGroupsSequence",
    "DoseGridScaling",
    "DoseUnits",
)

#: RT Dose Storage: its Dose Grid Scaling is the modality transform of its pixels.
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"


class TransformError(DicomDaskError, ValueError):
    """A requested pixel transform is absent or cannot be applied."""


@dataclass(frozen=True)
class TransformOptions:
    """The switches of the transform chain (highdicom's ``get_frames`` semantics).

    ``True``: apply, raise if absent; ``False``: do not apply; ``None``: apply if present.
    """

    dtype: str = "float32"
    apply_real_world_transform: bool | None = None
    real_world_value_map_selector: int | str = 0
    apply_modality_transform: bool | None = None
    apply_voi_transform: bool | None = False
    voi_transform_selector: int | str = 0
    voi_output_range: tuple[float, float] = (0.0, 1.0)
    apply_presentation_lut: bool = True
    apply_palette_color_lut: bool | None = None
    apply_icc_profile: bool | None = None

    @classmethod
    def coerce(cls, *, dtype: Any = np.float32, **switches: Any) -> TransformOptions:
        """Build from keyword switches, normalising the dtype and the output range."""
        if "voi_output_range" in switches:
            low, high = switches["voi_output_range"]
            switches["voi_output_range"] = (float(low), float(high))
        return cls(dtype=np.dtype(dtype).name, **switches)

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> TransformOptions:
        """Build from a ``transformed()`` method's ``locals()``: its switch arguments."""
        names = {f.name for f in fields(cls)}
        return cls.coerce(**{k: v for k, v in arguments.items() if k in names})

    def highdicom_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of highdicom's pixel transform
        (``dicom_dask.compat.combined_pixel_transform``)."""
        kwargs = asdict(self)
        kwargs["output_dtype"] = np.dtype(kwargs.pop("dtype"))
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (stored with the transformed object)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def dataset_key(ds: Dataset) -> str:
    """A digest of the attributes that define ``ds``'s pixel transform."""
    h = hashlib.sha1(usedforsecurity=False)
    for keyword in TRANSFORM_KEYWORDS:
        if keyword in ds:
            h.update(keyword.encode())
            h.update(repr(ds[keyword].value).encode("utf-8", "replace"))
    return h.hexdigest()


def _describe(transform: Any) -> dict[str, Any]:
    """What highdicom's transform will do (from its resolved parameters)."""
    out: dict[str, Any] = {}
    p = pixel_transform_parameters(transform)
    if p.slope_intercept is not None:
        out["slope_intercept"] = [float(v) for v in p.slope_intercept]
    if p.window_center_width is not None:
        out["window_center_width"] = [float(v) for v in p.window_center_width]
        out["voi_function"] = str(p.voi_function)
    if p.has_lut:
        out["lut"] = True
    out["invert"] = p.invert
    out["color"] = p.color_type
    out["icc_profile"] = p.color_manager is not None
    return out


class _Rescale:
    """A modality rescale alone, in the output dtype: highdicom's result.

    Floating point: convert, multiply, add, as highdicom. Integer output (which
    highdicom allows only for integral slope and intercept whose results fit the
    dtype): the arithmetic wraps modulo 2**bits, so converting first gives the same
    values as highdicom's wider intermediate converted last.
    """

    def __init__(self, slope: float, intercept: float, dtype: np.dtype[Any]) -> None:
        self.slope, self.intercept, self.dtype = float(slope), float(intercept), dtype

    def __call__(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(frame.shape, dtype=self.dtype)
        # in the output dtype, as highdicom: convert, multiply, then add. A plain
        # conversion followed by in-place arithmetic is 2-3x faster than one ufunc
        # casting through its buffers, with identical results (the same cast either way).
        slope, intercept = self.dtype.type(self.slope), self.dtype.type(self.intercept)
        if (
            frame.dtype.kind in "iu"
            and self.dtype.kind in "iu"
            and frame.dtype.itemsize == self.dtype.itemsize
        ):  # an integer cast to the same size is a view (modulo 2**bits): one pass fewer
            src = frame.view(self.dtype)
            if self.slope != 1.0:
                src = np.multiply(src, slope, out=out)
            if self.intercept != 0.0:
                np.add(src, intercept, out=out)
            elif src is not out:
                np.copyto(out, src)
            return out
        np.copyto(out, frame, casting="unsafe")
        if self.slope != 1.0:
            out *= slope
        if self.intercept != 0.0:
            out += intercept
        return out


class _LookupICC:
    """An ICC colour transform of 8-bit RGB as a 2**24-entry lookup table.

    The table is highdicom's own colour manager applied once to every RGB value
    (littleCMS maps each pixel independently), so the output is identical; the
    lookup is NumPy, which releases the GIL and runs in parallel across chunks.
    """

    def __init__(self, color_manager: Any, dtype: np.dtype[Any]) -> None:
        self.color_manager = color_manager
        self.dtype = dtype
        self._lut: np.ndarray | None = None
        self._lock = threading.Lock()

    def lut(self) -> np.ndarray:
        with self._lock:  # built once, by the first thread that needs it
            if self._lut is None:
                self._lut = self._build()
            return self._lut

    def _build(self) -> np.ndarray:
        every = np.arange(2**24, dtype=np.uint32)
        rgb = np.stack([every >> 16, (every >> 8) & 255, every & 255], axis=-1)
        image = rgb.astype(np.uint8).reshape(4096, 4096, 3)
        return np.ascontiguousarray(self.color_manager.transform_frame(image).reshape(-1, 3))

    def __call__(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        index = frame[..., 0].astype(np.uint32) << 16
        index |= frame[..., 1].astype(np.uint32) << 8
        index |= frame[..., 2]
        if out is None:
            out = np.empty(frame.shape, dtype=self.dtype)
        out[...] = np.take(self.lut(), index, axis=0)
        return out


def _accelerated(transform: Any) -> Any:
    """A faster equivalent of highdicom's transform for the common chains, else itself."""
    dtype = np.dtype(transform.output_dtype)
    p = pixel_transform_parameters(transform)
    simple = (
        p.input_range_check is None
        and not p.has_lut
        and p.window_center_width is None
        and not p.invert
    )
    if not simple:
        return transform
    color, manager, rescale = p.color_type, p.color_manager, p.slope_intercept
    fast: _Rescale | _LookupICC | None = None
    if (
        color.endswith("MONOCHROME")
        and manager is None
        and rescale is not None
        and (dtype.kind == "f" or np.dtype(transform.input_dtype).kind in "iu")
    ):
        fast = _Rescale(rescale[0], rescale[1], dtype)
    elif (
        color.endswith(".COLOR")
        and manager is not None
        and rescale is None
        and int(getattr(transform, "bits_allocated", 8)) == 8
    ):
        fast = _LookupICC(manager, dtype)
    if fast is None:
        return transform
    fast.source = transform  # type: ignore[union-attr]
    return fast


def _apply(transform: Any, frame: np.ndarray, out: np.ndarray) -> None:
    if isinstance(transform, _Rescale | _LookupICC):
        transform(frame, out=out)
    else:
        out[...] = transform(frame)


def with_dose_scaling(ds: Dataset) -> Dataset:
    """``ds``, or for an RT Dose a copy whose (3004,000E) Dose Grid Scaling is its
    Rescale Slope, so that the modality transform yields doses in (3004,0002) Dose
    Units (``GY``, or ``RELATIVE``): ``pixel_array * DoseGridScaling``, as dicompyler
    and the standard (C.8.8.3.1) compute them.

    highdicom's transform knows Rescale Slope / Intercept and Modality LUTs but not
    Dose Grid Scaling. An RT Dose that also has a Rescale Slope (none does by the
    standard, whose RT Dose module has no Modality LUT module) is left as it is.
    """
    scaling = ds.get("DoseGridScaling")
    is_dose = str(ds.get("SOPClassUID", "")) == RT_DOSE_STORAGE or ds.get("Modality") == "RTDOSE"
    if not is_dose or scaling in (None, "") or "RescaleSlope" in ds:
        return ds
    out = Dataset()
    out.update(ds)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    out.RescaleSlope = float(scaling)
    out.RescaleIntercept = 0.0
    out.RescaleType = str(ds.get("DoseUnits", "") or "GY")[:16]
    return out


def _voi_sources(ds: Dataset, frame: int) -> Dataset:
    """The dataset holding the VOI windows of ``frame``: a functional group's Frame VOI
    LUT item (per frame, else shared), else ``ds`` itself."""
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        return ds
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        if groups:
            group = groups[min(frame, len(groups) - 1)]
            if group.get("FrameVOILUTSequence"):
                return group.FrameVOILUTSequence[0]
    return ds


def voi_choices(ds: Dataset, frame: int = 0) -> str:
    """The VOI windows and LUTs of ``frame`` of ``ds``, as the values of
    ``voi_transform_selector`` that select them, for an error message."""
    source = _voi_sources(ds, frame)

    def values(keyword: str) -> list[Any]:
        value = source.get(keyword)
        if value is None or value == "":
            return []
        return [value] if isinstance(value, str) or not isinstance(value, Sequence) else list(value)

    choices = [  # a VOI LUT Sequence takes precedence over windows, as in highdicom
        f"[{i}] LUT {str(item.get('LUTExplanation', '') or '(no explanation)')!r}"
        for i, item in enumerate(source.get("VOILUTSequence") or [])
    ]
    if not choices:
        names = values("WindowCenterWidthExplanation")
        for i, (center, width) in enumerate(
            zip(values("WindowCenter"), values("WindowWidth"), strict=False)
        ):
            name = repr(str(names[i])) if i < len(names) else "(no explanation)"
            choices.append(f"[{i}] window {name}: center {float(center):g}, width {float(width):g}")
    if not choices:
        return "the image has no VOI window or VOI LUT (pass apply_voi_transform=False or None)"
    return (
        "pass voi_transform_selector= an index or an explanation of one of the image's "
        f"VOI transforms: {'; '.join(choices)}"
    )


class FrameTransformer:
    """The transform of every frame that can appear in an array, built lazily.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        Header datasets with distinct transform parameters.
    frames : numpy.ndarray
        ``(*frame_axes, 2)`` int64: for each position along the array's frame-selecting
        axes, ``(dataset index, frame index)``; ``-1`` for an absent frame (the
        fill value goes through the first dataset's transform).
    options : TransformOptions
    names : sequence of str, optional
        The file or URL of each dataset, for error messages.
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        frames: np.ndarray,
        options: TransformOptions,
        names: Sequence[str] | None = None,
    ) -> None:
        self.datasets = [with_dose_scaling(ds) for ds in datasets]
        self.names = (
            list(names)
            if names is not None
            else [str(ds.get("SOPInstanceUID", f"dataset {i}")) for i, ds in enumerate(datasets)]
        )
        self.frames = np.asarray(frames, dtype=np.int64)
        self.options = options
        self._cache: dict[tuple[int, int], Any] = {}
        self._shared: dict[int, bool] = {}
        # build each dataset's transform now: a switch set to True on an absent
        # transform raises here, when the array is built, not in a dask task
        self.applied = [
            _describe(getattr(t, "source", t))
            for t in (self.get(i, 0) for i in range(len(self.datasets)))
        ]
        first = self.get(0, 0)
        probe = getattr(first, "source", first)  # highdicom's own: no lookup table built here
        rows = int(self.datasets[0].get("Rows", 1) or 1)
        cols = int(self.datasets[0].get("Columns", 1) or 1)
        samples = int(self.datasets[0].get("SamplesPerPixel", 1) or 1)
        shape = (min(rows, 2), min(cols, 2)) + ((samples,) if samples > 1 else ())
        self.adds_samples = probe(np.zeros(shape, dtype=self._stored_dtype())).ndim > len(shape)

    def _stored_dtype(self) -> np.dtype[Any]:
        ds = self.datasets[0]
        bits = int(ds.get("BitsAllocated", 16) or 16)
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return np.dtype(f"f{bits // 8}")
        kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) else "u"
        return np.dtype(f"{kind}{max(1, bits // 8)}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def with_frames(self, frames: np.ndarray) -> FrameTransformer:
        """The same transformer (and its built transforms) over another frame table."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.frames = np.asarray(frames, dtype=np.int64)
        return new

    def get(self, dataset: int, frame: int) -> Any:
        """highdicom's combined transform for ``frame`` of ``datasets[dataset]``."""
        if self._shared.get(dataset):
            frame = 0
        key = (dataset, frame)
        transform = self._cache.get(key)
        if transform is None:
            try:
                transform = combined_pixel_transform(
                    self.datasets[dataset], frame, **self.options.highdicom_kwargs()
                )
            except (
                ValueError,
                AttributeError,
                KeyError,
                TypeError,
                IndexError,
                RuntimeError,
            ) as exc:
                if self.options.apply_voi_transform is not False and "VOI" in str(exc).upper():
                    selector = self.options.voi_transform_selector
                    raise TransformError(
                        f"{self.names[dataset]}: frame {frame + 1}: no VOI transform "
                        f"voi_transform_selector={selector!r} ({exc}); "
                        f"{voi_choices(self.datasets[dataset], frame)}"
                    ) from exc
                raise TransformError(
                    f"{self.names[dataset]}: frame {frame + 1}: cannot build the pixel "
                    f"transform with "
                    f"{self.options.to_dict()}: {exc}"
                ) from exc
            self._shared[dataset] = bool(transform.applies_to_all_frames)
            transform = _accelerated(transform)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = transform
        return transform


def apply_block(
    block: np.ndarray,
    transformer: FrameTransformer,
    roles: str,
    block_info: dict[Any, Any] | None = None,
    *,
    out: np.ndarray | None = None,
    positions: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Transform one dask block: ``roles`` has an ``f`` for every frame-selecting axis.

    Every position along the ``f`` axes is one frame (2-D, or 2-D with samples)
    transformed with its own frame's parameters; ``out`` receives the result. The
    block's place in the array comes from ``block_info`` (contiguous) or, for any
    selection, ``positions``: the array positions of the block along each ``f`` axis.
    """
    dtype = np.dtype(transformer.options.dtype)
    tail = (3,) if transformer.adds_samples else ()
    if out is None:
        out = np.empty(block.shape + tail, dtype=dtype)
    if block.size == 0:
        return out
    axes = [i for i, r in enumerate(roles) if r == "f"]
    if positions is None:
        if block_info is not None and None in block_info:
            location = block_info[None]["array-location"]
        elif block_info is not None:
            location = block_info[0]["array-location"]
        else:
            location = [(0, n) for n in block.shape]
        positions = [np.arange(lo, hi) for lo, hi in location]
    if not axes:
        dataset, frame = (int(v) for v in transformer.frames)
        _apply(transformer.get(max(dataset, 0), max(frame, 0)), block, out)
        return out
    where = [np.asarray(positions[a]) for a in axes]
    if axes == [0]:  # frames along axis 0 only: runs sharing an elementwise transform
        _apply_runs(block, transformer, where[0], out)
        return out
    for idx in np.ndindex(*[block.shape[a] for a in axes]):
        position = tuple(int(w[j]) for w, j in zip(where, idx, strict=True))
        dataset, frame = (int(v) for v in transformer.frames[position])
        if dataset < 0:
            dataset, frame = 0, 0
        sel: list[Any] = [slice(None)] * block.ndim
        for a, j in zip(axes, idx, strict=True):
            sel[a] = j
        _apply(transformer.get(dataset, frame), block[tuple(sel)], out[tuple(sel)])
    return out


def _apply_runs(
    block: np.ndarray, transformer: FrameTransformer, where: np.ndarray, out: np.ndarray
) -> None:
    """``apply_block`` for frames along axis 0, at array positions ``where``: a run of
    frames sharing one of the elementwise fast transforms is transformed in one call."""
    transforms = []
    for j in range(block.shape[0]):
        dataset, frame = (int(v) for v in transformer.frames[int(where[j])])
        transforms.append(transformer.get(*((0, 0) if dataset < 0 else (dataset, frame))))
    j = 0
    while j < len(transforms):
        transform, k = transforms[j], j + 1
        if isinstance(transform, _Rescale | _LookupICC):
            while k < len(transforms) and transforms[k] is transform:
                k += 1
            _apply(transform, block[j:k], out[j:k])
        else:  # highdicom's transforms take one frame
            _apply(transform, block[j], out[j])
        j = k
