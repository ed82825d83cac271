"""Write synthetic DICOM files with pydicom: for tests, benchmarks and the demo.

Nothing here is downloaded: frames are encoded by pydicom's encoders (RLE, JPEG-LS
through pyjpegls) or, for JPEG baseline, by imagecodecs (libjpeg-turbo) or Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, itemize_frame
from pydicom.pixels import pack_bits

__all__ = [
    "encode_frame",
    "make_dataset",
    "make_enhanced_dataset",
    "make_slide_dataset",
    "series_positions",
    "write_dicom",
    "write_series",
    "write_slide",
]


def encode_frame(frame: np.ndarray, transfer_syntax: str, *, quality: int = 90) -> bytes:
    """Encode one frame ``(rows, columns[, samples])`` in ``transfer_syntax``."""
    if transfer_syntax == _uid.JPEGBaseline8Bit:
        try:
            import imagecodecs

            return bytes(imagecodecs.jpeg8_encode(frame, level=quality))
        except ImportError:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
            return buf.getvalue()
    from pydicom.pixels import get_encoder

    samples = frame.shape[2] if frame.ndim == 3 else 1
    bits = frame.dtype.itemsize * 8
    opts = {
        "rows": frame.shape[0],
        "columns": frame.shape[1],
        "samples_per_pixel": samples,
        "bits_allocated": bits,
        "bits_stored": bits,
        "pixel_representation": int(frame.dtype.kind == "i"),
        "photometric_interpretation": "RGB" if samples == 3 else "MONOCHROME2",
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    return bytes(get_encoder(transfer_syntax).encode(np.ascontiguousarray(frame), **opts))


def make_dataset(
    frames: np.ndarray,
    *,
    transfer_syntax: str = _uid.ExplicitVRLittleEndian,
    offset_table: str = "bot",
    fragments_per_frame: int = 1,
    planar_configuration: int = 0,
    bits_allocated: int | None = None,
    photometric_interpretation: str | None = None,
    encoded: Sequence[bytes] | None = None,
    extra: dict[str, Any] | None = None,
    pixel_vr: str | None = None,
) -> Dataset:
    """A Dataset holding ``frames`` of shape ``(frames, rows, columns[, samples])``.

    Parameters
    ----------
    offset_table : {"bot", "eot", "none"}
        For encapsulated syntaxes: a Basic Offset Table, an Extended Offset Table
        (with an empty BOT), or an empty BOT.
    fragments_per_frame : int
        Split each encoded frame over this many fragments (BOT or none only).
    bits_allocated : int, optional
        ``1`` packs a binary image bit by bit (native only).
    pixel_vr : {"OB", "OW"}, optional
        VR of native Pixel Data (default OB up to 8 bits, else OW). 8-bit data as OW
        in Explicit VR Big Endian are byte swapped by 16-bit words, as old big-endian
        writers stored them.
    """
    frames = np.asarray(frames)
    nframes, rows, cols = frames.shape[:3]
    samples = frames.shape[3] if frames.ndim == 4 else 1
    is_float = frames.dtype.kind == "f"
    ba = bits_allocated or frames.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = _uid.UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPClassUID = _uid.UID("1.2.840.10008.5.1.4.1.1.7.2")
    ds.file_meta.MediaStorageSOPInstanceUID = _uid.generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid.generate_uid()
    ds.SeriesInstanceUID = _uid.generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    default_pi = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3 and transfer_syntax == _uid.JPEGBaseline8Bit:
        default_pi = "YBR_FULL_422"  # libjpeg-turbo writes YCbCr with 4:2:0/4:2:2
    ds.PhotometricInterpretation = photometric_interpretation or default_pi
    if samples > 1:
        ds.PlanarConfiguration = planar_configuration
    ds.NumberOfFrames = nframes
    ds.BitsAllocated = ba
    if not is_float:
        ds.BitsStored = ba
        ds.HighBit = ba - 1
        ds.PixelRepresentation = int(frames.dtype.kind == "i")
    tsyntax = _uid.UID(transfer_syntax)
    if not tsyntax.is_encapsulated:
        if ba == 1:
            value = pack_bits(frames.astype(np.uint8).ravel())
        else:
            data = frames
            if samples > 1 and planar_configuration == 1:
                data = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
            big = tsyntax == _uid.ExplicitVRBigEndian
            value = data.astype(data.dtype.newbyteorder(">" if big else "<")).tobytes()
        if len(value) % 2:
            value += b"\x00"
        vr = pixel_vr or ("OB" if ba <= 8 else "OW")
        if vr == "OW" and ba == 8 and tsyntax == _uid.ExplicitVRBigEndian:
            value = np.frombuffer(value, dtype="<u2").astype(">u2").tobytes()
        if is_float:
            keyword = "FloatPixelData" if ba == 32 else "DoubleFloatPixelData"
            setattr(ds, keyword, value)
            ds[keyword].VR = "OF" if ba == 32 else "OD"
        else:
            ds.PixelData = value
            ds["PixelData"].VR = vr
    else:
        if encoded is None:
            encoded = [encode_frame(f, tsyntax) for f in frames]
        if offset_table == "eot":
            value, eot, lengths = encapsulate_extended(list(encoded))
            ds.PixelData = value
            ds.ExtendedOffsetTable = eot
            ds.ExtendedOffsetTableLengths = lengths
        elif offset_table == "bot":
            ds.PixelData = encapsulate(
                list(encoded), fragments_per_frame=fragments_per_frame, has_bot=True
            )
        elif offset_table == "none":
            items = b"".join(b"".join(itemize_frame(f, fragments_per_frame)) for f in encoded)
            ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + items
        else:
            raise ValueError(f"offset_table must be 'bot', 'eot' or 'none', got {offset_table!r}")
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def write_dicom(path: str | os.PathLike[str], frames: np.ndarray, **kwargs: Any) -> str:
    """Write ``frames`` to ``path`` as a DICOM file (see
    [`make_dataset`][dicom_dask.testing.synthetic.make_dataset])."""
    ds = make_dataset(frames, **kwargs)
    tsyntax = ds.file_meta.TransferSyntaxUID
    ds.save_as(
        os.fspath(path),
        enforce_file_format=True,
        implicit_vr=tsyntax == _uid.ImplicitVRLittleEndian,
        little_endian=tsyntax != _uid.ExplicitVRBigEndian,
    )
    return os.fspath(path)


def _tile_grid(shape: tuple[int, int], tile: tuple[int, int]) -> tuple[int, int]:
    return -(-shape[0] // tile[0]), -(-shape[1] // tile[1])


#: ``(optical path, focal plane, tile row, tile column)`` of a tile.
_Tile = tuple[int, int, int, int]


def _frame_order(
    positions: list[_Tile], organization: str, omit: Sequence[tuple[int, ...]], shuffle: int | None
) -> list[int]:
    """Which tiles become frames, in frame order (all, in TILED_FULL order, unless sparse)."""
    order = list(range(len(positions)))
    if organization == "TILED_SPARSE":
        omitted = {t if len(t) == 4 else (0, 0, *t) for t in omit}
        order = [i for i in order if positions[i] not in omitted]
        if shuffle is not None:
            np.random.default_rng(shuffle).shuffle(order)
    elif omit or shuffle is not None:
        raise ValueError("omit and shuffle need organization='TILED_SPARSE'")
    return order


def _slide_frames(
    matrix: np.ndarray,
    tile: tuple[int, int],
    tiles: list[_Tile],
    tsyntax: _uid.UID,
    encoded_tiles: Sequence[bytes] | None,
    crop_edges: bool,
) -> tuple[np.ndarray, list[bytes] | None]:
    """The frames (edge tiles padded) of ``tiles``, and their encoded bytes if known."""
    if crop_edges and (encoded_tiles is not None or not tsyntax.is_encapsulated):
        raise ValueError("crop_edges needs an encapsulated transfer syntax and no encoded_tiles")
    if encoded_tiles is not None:  # only the shape of the frames is used
        frames = np.broadcast_to(
            np.zeros((1,) * (3 + matrix.ndim - 4), dtype=matrix.dtype),
            (len(tiles), *tile, *matrix.shape[4:]),
        )
        return frames, list(encoded_tiles)
    frames = np.zeros((len(tiles), *tile, *matrix.shape[4:]), dtype=matrix.dtype)
    encoded: list[bytes] | None = [] if crop_edges else None
    for n, (p, z, r, c) in enumerate(tiles):
        part = matrix[p, z, r * tile[0] : (r + 1) * tile[0], c * tile[1] : (c + 1) * tile[1]]
        frames[n, : part.shape[0], : part.shape[1]] = part
        if encoded is not None:
            encoded.append(encode_frame(np.ascontiguousarray(part), tsyntax))
    return frames, encoded


def _optical_paths(ids: Sequence[str]) -> list[Dataset]:
    """An Optical Path Sequence item per identifier."""
    items = []
    for identifier in ids:
        item = Dataset()
        item.OpticalPathIdentifier = identifier
        item.OpticalPathDescription = f"optical path {identifier}"
        items.append(item)
    return items


def _slide_shared_groups(
    pixel_spacing: float, z_offsets: Sequence[float], ids: Sequence[str], *, paths: int, planes: int
) -> Dataset:
    """The Shared Functional Groups item: pixel measures, and the optical path if one."""
    measures = Dataset()
    measures.PixelSpacing = [pixel_spacing, pixel_spacing]
    measures.SliceThickness = 0.001
    if planes > 1:
        measures.SpacingBetweenSlices = (z_offsets[1] - z_offsets[0]) / 1000.0
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    if paths == 1:
        shared_ident = Dataset()
        shared_ident.OpticalPathIdentifier = ids[0]
        shared.OpticalPathIdentificationSequence = [shared_ident]
    return shared


def _sparse_frame_groups(
    tiles: list[_Tile],
    tile: tuple[int, int],
    *,
    origin: tuple[float, float],
    orientation: Sequence[float],
    pixel_spacing: float,
    z_offsets: Sequence[float],
    ids: Sequence[str],
    paths: int,
) -> list[Dataset]:
    """Per-frame Plane Position (Slide), and Optical Path Identification if several."""
    row_dir = np.array(orientation[:3], dtype=float)
    col_dir = np.array(orientation[3:], dtype=float)
    per_frame = []
    for p, z, r, c in tiles:
        item = Dataset()
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix = c * tile[1] + 1
        pos.RowPositionInTotalImagePixelMatrix = r * tile[0] + 1
        xyz = (
            np.array([*origin, 0.0])
            + row_dir * c * tile[1] * pixel_spacing
            + col_dir * r * tile[0] * pixel_spacing
        )
        pos.XOffsetInSlideCoordinateSystem = round(float(xyz[0]), 6)
        pos.YOffsetInSlideCoordinateSystem = round(float(xyz[1]), 6)
        pos.ZOffsetInSlideCoordinateSystem = z_offsets[z]
        item.PlanePositionSlideSequence = [pos]
        if paths > 1:
            frame_ident = Dataset()
            frame_ident.OpticalPathIdentifier = ids[p]
            item.OpticalPathIdentificationSequence = [frame_ident]
        per_frame.append(item)
    return per_frame


def _set_slide_identity(
    ds: Dataset,
    image_type: str,
    *,
    study_uid: str | None,
    series_uid: str | None,
    frame_of_reference: str | None,
    container_id: str,
) -> None:
    """SOP class, Modality, Image Type, UIDs and container of a slide instance."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _uid.VLWholeSlideMicroscopyImageStorage
    ds.Modality = "SM"
    ds.ImageType = [
        "ORIGINAL" if image_type == "VOLUME" else "DERIVED",
        "PRIMARY",
        image_type,
        "NONE",
    ]
    if study_uid:
        ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference or _uid.generate_uid()
    ds.ContainerIdentifier = container_id


def make_slide_dataset(
    matrix: np.ndarray,
    *,
    tile: tuple[int, int] = (256, 256),
    transfer_syntax: str = _uid.JPEGBaseline8Bit,
    organization: str = "TILED_FULL",
    omit: Sequence[tuple[int, ...]] = (),
    shuffle: int | None = None,
    image_type: str = "VOLUME",
    pixel_spacing: float = 0.00025,
    origin: tuple[float, float] = (20.0, 40.0),
    orientation: Sequence[float] = (0.0, -1.0, 0.0, -1.0, 0.0, 0.0),
    optical_paths: Sequence[str] | None = None,
    focal_planes: Sequence[float] | None = None,
    container_id: str = "SLIDE-1",
    frame_of_reference: str | None = None,
    study_uid: str | None = None,
    offset_table: str = "bot",
    encoded_tiles: Sequence[bytes] | None = None,
    series_uid: str | None = None,
    extra: dict[str, Any] | None = None,
    crop_edges: bool = False,
) -> Dataset:
    """A VL Whole Slide Microscopy Image holding ``matrix`` as tiles.

    Parameters
    ----------
    matrix : numpy.ndarray
        The total pixel matrix: ``(rows, columns[, samples])``, or
        ``(optical paths, focal planes, rows, columns[, samples])``.
    tile : (int, int)
        Rows and Columns of a frame; edge tiles are padded with zeros.
    organization : {"TILED_FULL", "TILED_SPARSE"}
        ``TILED_SPARSE`` writes Plane Position (Slide) per frame.
    omit : sequence of tuples
        ``(tile_row, tile_col)`` or ``(path, plane, tile_row, tile_col)`` tiles left
        out (``TILED_SPARSE`` only).
    shuffle : int, optional
        Seed to shuffle the frame order (``TILED_SPARSE`` only).
    encoded_tiles : sequence of bytes, optional
        Already encoded frames, in the TILED_FULL order of all tiles (skips encoding).
    extra : dict, optional
        Further attributes by keyword (e.g. ``{"PatientName": "DOE^JANE"}``), set last.
    crop_edges : bool
        Encode the tiles of the last tile column and row at the size the matrix leaves
        them (as some scanners do: a 42-pixel-wide JPEG where tiles are 64 wide) instead
        of padding them (encapsulated transfer syntaxes only).
    """
    matrix = np.asarray(matrix)
    samples = 3 if matrix.ndim in (3, 5) and matrix.shape[-1] == 3 else 1
    if matrix.ndim in (2, 3) and not (matrix.ndim == 3 and samples == 1):
        matrix = matrix[np.newaxis, np.newaxis]
    paths, planes, rows, cols = matrix.shape[:4]
    grid = _tile_grid((rows, cols), tile)
    positions = list(np.ndindex(paths, planes, *grid))
    order = _frame_order(positions, organization, omit, shuffle)
    tiles = [positions[i] for i in order]
    tsyntax = _uid.UID(transfer_syntax)
    frames, encoded = _slide_frames(
        matrix,
        tile,
        tiles,
        tsyntax,
        None if encoded_tiles is None else [encoded_tiles[i] for i in order],
        crop_edges,
    )
    if tsyntax.is_encapsulated and encoded is None:
        encoded = [encode_frame(f, tsyntax) for f in frames]
    ds = make_dataset(
        frames,
        transfer_syntax=tsyntax,
        offset_table=offset_table,
        encoded=encoded,
        photometric_interpretation=None,
    )
    _set_slide_identity(
        ds,
        image_type,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference=frame_of_reference,
        container_id=container_id,
    )
    ds.DimensionOrganizationType = organization
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
    ds.TotalPixelMatrixFocalPlanes = planes
    ds.ImagedVolumeWidth = cols * pixel_spacing
    ds.ImagedVolumeHeight = rows * pixel_spacing
    ds.ImagedVolumeDepth = 0.001
    ds.NumberOfOpticalPaths = paths
    ds.ImageOrientationSlide = [float(v) for v in orientation]
    origin_item = Dataset()
    origin_item.XOffsetInSlideCoordinateSystem = origin[0]
    origin_item.YOffsetInSlideCoordinateSystem = origin[1]
    ds.TotalPixelMatrixOriginSequence = [origin_item]
    ids = list(optical_paths or [str(i) for i in range(paths)])
    ds.OpticalPathSequence = _optical_paths(ids)
    z_offsets = list(focal_planes or [float(i) for i in range(planes)])
    ds.SharedFunctionalGroupsSequence = [
        _slide_shared_groups(pixel_spacing, z_offsets, ids, paths=paths, planes=planes)
    ]
    if organization == "TILED_SPARSE":
        ds.PerFrameFunctionalGroupsSequence = _sparse_frame_groups(
            tiles,
            tile,
            origin=origin,
            orientation=orientation,
            pixel_spacing=pixel_spacing,
            z_offsets=z_offsets,
            ids=ids,
            paths=paths,
        )
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def write_slide(path: str | os.PathLike[str], matrix: np.ndarray, **kwargs: Any) -> str:
    """Write one slide instance (see
    [`make_slide_dataset`][dicom_dask.testing.synthetic.make_slide_dataset]) to ``path``."""
    ds = make_slide_dataset(matrix, **kwargs)
    ds.save_as(os.fspath(path), enforce_file_format=True)
    return os.fspath(path)


def _geometry_attrs(
    ds: Dataset, *, study_uid: str, frame_of_reference: str, series_uid: str, modality: str
) -> None:
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality = modality


def series_positions(
    n: int,
    *,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-100.0, -120.0, 30.0),
    slice_spacing: float = 2.0,
    tilt: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``(n, 3)`` positions stacked along the normal (plus ``tilt`` per slice)."""
    o = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(o[:3], o[3:])
    k = np.arange(n)[:, None]
    return np.asarray(origin) + k * (normal * slice_spacing + np.asarray(tilt))


def write_series(
    folder: str | os.PathLike[str],
    volume: np.ndarray,
    *,
    positions: np.ndarray | None = None,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (0.5, 0.75),
    series_uid: str | None = None,
    study_uid: str = "1.2.826.0.1.3680043.8.498.10",
    frame_of_reference: str = "1.2.826.0.1.3680043.8.498.11",
    shuffle: int | None = None,
    prefix: str = "slice",
    modality: str = "CT",
    extra: Sequence[dict[str, Any]] | None = None,
    transfer_syntax: str = _uid.ExplicitVRLittleEndian,
) -> list[str]:
    """Write ``volume`` ``(slices, rows, columns)`` as single-frame files in ``folder``.

    ``positions`` default to a regular stack along the normal of ``orientation``.
    With ``shuffle``, file names and Instance Numbers are permuted (not in space
    order). ``extra`` holds per-slice attributes (e.g. Temporal Position Identifier).
    """
    os.makedirs(folder, exist_ok=True)
    n = len(volume)
    if positions is None:
        positions = series_positions(n, orientation=orientation)
    series_uid = series_uid or _uid.generate_uid()
    names = np.arange(n)
    if shuffle is not None:
        names = np.random.default_rng(shuffle).permutation(n)
    paths = []
    for k in range(n):
        ds = make_dataset(volume[k : k + 1], transfer_syntax=transfer_syntax)
        del ds.NumberOfFrames
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _uid.CTImageStorage
        _geometry_attrs(
            ds,
            study_uid=study_uid,
            frame_of_reference=frame_of_reference,
            series_uid=series_uid,
            modality=modality,
        )
        ds.ImagePositionPatient = [round(float(v), 6) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.InstanceNumber = int(names[k]) + 1
        for keyword, value in (extra[k] if extra else {}).items():
            setattr(ds, keyword, value)
        path = os.path.join(os.fspath(folder), f"{prefix}{int(names[k]):04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_enhanced_dataset(
    frames: np.ndarray,
    *,
    positions: np.ndarray,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (0.5, 0.75),
    stack_ids: Sequence[str] | None = None,
    temporal: Sequence[int] | None = None,
    transfer_syntax: str = _uid.ExplicitVRLittleEndian,
) -> Dataset:
    """An Enhanced MR Image with per-frame Plane Position (Patient) and a Dimension Index.

    ``stack_ids`` / ``temporal`` give each frame's Stack ID / Temporal Position Index;
    they are declared in the Dimension Index Sequence with In-Stack Position Number.
    """
    ds = make_dataset(frames, transfer_syntax=transfer_syntax)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _uid.EnhancedMRImageStorage
    _geometry_attrs(
        ds,
        study_uid=_uid.generate_uid(),
        frame_of_reference=_uid.generate_uid(),
        series_uid=_uid.generate_uid(),
        modality="MR",
    )
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [float(v) for v in orientation]
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in pixel_spacing]
    measures.SliceThickness = 1.0
    shared.PlaneOrientationSequence = [orient]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    pointers = []
    if stack_ids is not None:
        pointers.append(0x00209056)
    pointers.append(0x00209057)
    if temporal is not None:
        pointers.append(0x00209128)
    ds.DimensionIndexSequence = []
    for pointer in pointers:
        item = Dataset()
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111
        ds.DimensionIndexSequence.append(item)
    # In-Stack Position Number counts positions within each stack, in frame order
    in_stack: dict[str, dict[tuple[float, ...], int]] = {}
    per_frame = []
    for k, position in enumerate(positions):
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [round(float(v), 6) for v in position]
        item.PlanePositionSequence = [plane]
        content = Dataset()
        stack = stack_ids[k] if stack_ids is not None else "1"
        slots = in_stack.setdefault(stack, {})
        number = slots.setdefault(tuple(np.round(position, 4)), len(slots) + 1)
        values = []
        if stack_ids is not None:
            content.StackID = stack
            values.append(int(stack))
        content.InStackPositionNumber = number
        values.append(number)
        if temporal is not None:
            content.TemporalPositionIndex = int(temporal[k])
            values.append(int(temporal[k]))
        content.DimensionIndexValues = values
        item.FrameContentSequence = [content]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    return ds
