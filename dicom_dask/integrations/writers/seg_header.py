"""The header of a Segmentation: what its segments are and highdicom's template.

highdicom builds the metadata -- segment descriptions, code sequences, the references
to the source, the dimension index and the functional groups -- from a one-tile
(slide) or one-slice (volume) template, see
[`seg_template`][dicom_dask.integrations.writers.seg_header.seg_template]; the writers
then widen it to the full geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicom_dask.errors import DicomDaskError, InvalidHeaderError, LayoutError
from dicom_dask.integrations.writers.dataset import new_uid, software_version

__all__ = ["SegContent", "seg_template", "segment_descriptions", "template_pixels"]


@dataclass(frozen=True, kw_only=True)
class SegContent:
    """What a Segmentation holds, as ``to_dicom_seg`` was asked.

    Attributes
    ----------
    kind : str
        ``"BINARY"``, ``"FRACTIONAL"`` or ``"LABELMAP"``.
    transfer_syntax : str
        The UID of the frames' transfer syntax.
    segment_labels : sequence of str, optional
        One label per segment.
    segment_descriptions : sequence, optional
        highdicom ``SegmentDescription`` items, instead of labels.
    algorithm : str
        The name of the algorithm that made the segments.
    max_fractional_value : int
        The stored value of probability 1 (``FRACTIONAL``).
    series_description : str, optional
        Series Description of the new series.
    """

    kind: str
    transfer_syntax: str
    segment_labels: Sequence[str] | None = None
    segment_descriptions: Sequence[Any] | None = None
    algorithm: str = "dicom_dask"
    max_fractional_value: int = 255
    series_description: str | None = None

    def descriptions(self, count: int) -> list[Any]:
        """The segments' descriptions: those given, or made from the labels."""
        if self.segment_descriptions:
            return list(self.segment_descriptions)
        return segment_descriptions(count, self.segment_labels, self.algorithm)


def segment_descriptions(
    number: int, segment_labels: Sequence[str] | None, algorithm: str
) -> list[Any]:
    """highdicom descriptions of ``number`` automatic segments (tissue, by ``algorithm``).

    Parameters
    ----------
    number : int
        The number of segments.
    segment_labels : sequence of str, optional
        Their labels (default ``"segment 1"``...).
    algorithm : str
        The algorithm's name.

    Returns
    -------
    list of highdicom.seg.SegmentDescription

    Raises
    ------
    LayoutError
        When the number of labels is not ``number``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = list(segment_labels or [f"segment {i}" for i in range(1, number + 1)])
    if len(labels) != number:
        raise LayoutError(f"{number} segments but {len(labels)} segment_labels")
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=software_version(), family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label,
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.cid7166.ConnectiveTissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        )
        for i, label in enumerate(labels)
    ]


def template_pixels(kind: str, shape: tuple[int, int], count: int, label_dtype: Any) -> np.ndarray:
    """The one-frame pixel array highdicom is given for a template of ``shape``.

    Parameters
    ----------
    kind : str
        The segmentation type.
    shape : (int, int)
        Rows and columns of the frame.
    count : int
        The number of segments (``FRACTIONAL``: one plane each).
    label_dtype : numpy dtype
        The labels' dtype (``LABELMAP``).
    """
    if kind == "FRACTIONAL":
        pixels = np.zeros((1, *shape, count), np.float32)
        return pixels[..., 0] if count == 1 else pixels
    return np.zeros((1, *shape), label_dtype if kind == "LABELMAP" else np.uint8)


def seg_template(
    source_images: list[Dataset],
    pixels: np.ndarray,
    content: SegContent,
    descriptions: Sequence[Any],
    *,
    tiled: tuple[int, int] | None,
    further: Sequence[Dataset] = (),
    pixel_measures: Any = None,
    where_text: str = "",
    geometry: dict[str, Any] | None = None,
) -> Dataset:
    """highdicom's Segmentation over a one-tile or one-slice template, without its pixels.

    Parameters
    ----------
    source_images : list of pydicom.Dataset
        The (completed) source header highdicom references.
    pixels : numpy.ndarray
        The template's one frame (see
        [`template_pixels`][dicom_dask.integrations.writers.seg_header.template_pixels]).
    content : SegContent
        What the Segmentation holds.
    descriptions : sequence
        The segments' descriptions.
    tiled : (int, int), optional
        The tile of a slide SEG (TILED_FULL); ``None`` over a volume.
    further : sequence of pydicom.Dataset
        The other source images of a volume.
    pixel_measures : highdicom.PixelMeasuresSequence, optional
        A volume's spacing.
    where_text : str
        The source, for messages.
    geometry : dict, optional
        highdicom's orientation and positions of labels at their own grid.

    Returns
    -------
    pydicom.Dataset
        The header, its transfer syntax that of ``content``, without Pixel Data.

    Raises
    ------
    InvalidHeaderError
        When highdicom refuses the source (its message, naming the file).
    """
    import highdicom as hd

    # a volume's labels at their own in-plane grid: its orientation and first position
    kwargs: dict[str, Any] = {"pixel_measures": pixel_measures, **(geometry or {})}
    if tiled is not None:
        kwargs = {
            "tile_pixel_array": True,
            "tile_size": tiled,
            "dimension_organization_type": "TILED_FULL",
            **(geometry or {}),  # a result at its own resolution: its spacing and origin
        }
    where = str(source_images[0].get("SOPInstanceUID", "the source"))
    try:
        seg = _build(hd, source_images, pixels, content, descriptions, further=further, **kwargs)
    except DicomDaskError:
        raise
    except Exception as exc:  # highdicom checks the source: its errors name no file
        raise InvalidHeaderError(
            f"{where_text or where}: highdicom cannot build a Segmentation over this "
            f"image: {type(exc).__name__}: {exc}"
        ) from exc
    seg.file_meta.TransferSyntaxUID = UID(content.transfer_syntax)
    if content.series_description:
        seg.SeriesDescription = content.series_description
    for keyword in ("PixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in seg:
            del seg[keyword]
    return seg


def _build(
    hd: Any,
    source_images: list[Dataset],
    pixels: np.ndarray,
    content: SegContent,
    descriptions: Sequence[Any],
    *,
    further: Sequence[Dataset],
    **kwargs: Any,
) -> Any:
    return hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=pixels,
        segmentation_type=content.kind,
        segment_descriptions=descriptions,
        series_instance_uid=new_uid(),
        series_number=901,
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer="dicom_dask",
        manufacturer_model_name="dicom_dask",
        software_versions=software_version(),
        device_serial_number="0",
        max_fractional_value=content.max_fractional_value,
        # the template's frame is encoded natively (highdicom's JPEG 2000 refuses frames
        # under 32 pixels: a small map is one small tile); the frames' syntax is set below
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        omit_empty_frames=False,
        further_source_images=list(further) or None,
        **kwargs,
    )
