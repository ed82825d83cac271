"""Headers of the written instances: VL Whole Slide Microscopy levels.

What places the result on its source -- patient, study, Frame of Reference, container
and specimen, optical paths, image orientation and origin -- is copied from a
``like`` dataset (the source slide's level 0); what describes the new pixels (UIDs,
matrix and tile sizes, pixel spacing, compression) is written here. Without a source,
minimal valid values are made (new UIDs from highdicom's ``UID``, an sRGB optical path
for colour images).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from typing import Any

from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import DSfloat

__all__ = [
    "RATIO_PLACEHOLDER",
    "LevelSpec",
    "SlideContext",
    "decimal_string",
    "new_uid",
    "slide_context",
    "slide_level_dataset",
    "software_version",
]

#: Lossy Image Compression Ratio written before the frames are encoded, patched after.
RATIO_PLACEHOLDER = "0" * 16

_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
_SLIDE = (
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "ContainerIdentifier",
    "IssuerOfTheContainerIdentifierSequence",
    "AlternateContainerIdentifierSequence",
    "ContainerTypeCodeSequence",
    "ContainerDescription",
    "ContainerComponentSequence",
    "SpecimenDescriptionSequence",
    "AcquisitionContextSequence",
    "ImageOrientationSlide",
    "TotalPixelMatrixOriginSequence",
    "ImagedVolumeDepth",
    "FocusMethod",
    "ExtendedDepthOfField",
    "SpecimenLabelInImage",
    "AcquisitionDateTime",
    "AcquisitionDuration",
)
_SOFTWARE = "dicom_dask"


def new_uid() -> str:
    """A new UID (highdicom's generator when installed, else pydicom's)."""
    try:
        from highdicom import UID

        return str(UID())
    except ImportError:  # pragma: no cover - highdicom is a dependency of the writers
        return str(_uid.generate_uid())


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


@dataclass(frozen=True)
class SlideContext:
    """The attributes shared by every instance written for one slide."""

    common: Dataset
    optical_path: Dataset
    series_uid: str
    lossy_source: bool
    #: Lossy Image Compression Method and Ratio values of the source.
    lossy_methods: tuple[str, ...] = ()
    lossy_ratios: tuple[str, ...] = ()
    #: Barcode Value and Label Text of the source's label (empty when unknown).
    label_text: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class LevelSpec:
    """One instance to write: its pixels and where they are."""

    rows: int
    columns: int
    tile: tuple[int, int]
    samples: int
    bits: int
    signed: bool
    pixel_spacing: tuple[float, float]
    image_type: str = "VOLUME"
    resampled: bool = False


def _copied(like: Dataset | None) -> tuple[Dataset, bool, tuple[str, ...], tuple[str, ...]]:
    """The patient, study and slide attributes of ``like``; whether it is lossy, and its
    Lossy Image Compression Methods and Ratios."""
    ds = Dataset()
    if like is None:
        return ds, False, (), ()
    for keyword in (*_PATIENT_STUDY, *_SLIDE):
        if keyword in like:
            ds[keyword] = copy.deepcopy(like[keyword])
    lossy = str(like.get("LossyImageCompression", "00")) == "01"
    methods: tuple[str, ...] = ()
    ratios: tuple[str, ...] = ()
    if lossy:
        methods = _strings(like.get("LossyImageCompressionMethod"))
        ratios = _strings(like.get("LossyImageCompressionRatio"))
        if len(methods) != len(ratios):
            methods, ratios = (), ()
    return ds, lossy, methods, ratios


def _complete(ds: Dataset) -> None:
    """Fill in what ``ds`` lacks of the modules a slide instance needs (minimal values)."""
    defaults: dict[str, Any] = {
        "PatientName": "",
        "PatientID": "",
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyInstanceUID": new_uid(),
        "StudyDate": "",
        "StudyTime": "",
        "ReferringPhysicianName": "",
        "StudyID": "",
        "AccessionNumber": "",
        "FrameOfReferenceUID": new_uid(),
        "PositionReferenceIndicator": "SLIDE_CORNER",
        "ContainerIdentifier": "SLIDE",
        "IssuerOfTheContainerIdentifierSequence": DicomSequence([]),
        "ContainerTypeCodeSequence": DicomSequence([_code("433466003", "SCT", "Microscope slide")]),
        "AcquisitionContextSequence": DicomSequence([]),
        "ImageOrientationSlide": [0.0, -1.0, 0.0, -1.0, 0.0, 0.0],
        "ImagedVolumeDepth": 0.001,
        "FocusMethod": "AUTO",
        "ExtendedDepthOfField": "NO",
        "SpecimenLabelInImage": "NO",
    }
    for keyword, value in defaults.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    if "SpecimenDescriptionSequence" not in ds:
        specimen = Dataset()
        specimen.SpecimenIdentifier = str(ds.ContainerIdentifier)
        specimen.SpecimenUID = new_uid()
        specimen.IssuerOfTheSpecimenIdentifierSequence = DicomSequence([])
        specimen.SpecimenPreparationSequence = DicomSequence([])
        ds.SpecimenDescriptionSequence = DicomSequence([specimen])
    if "TotalPixelMatrixOriginSequence" not in ds:
        origin = Dataset()
        origin.XOffsetInSlideCoordinateSystem = 0.0
        origin.YOffsetInSlideCoordinateSystem = 0.0
        ds.TotalPixelMatrixOriginSequence = DicomSequence([origin])
    if "AcquisitionDateTime" not in ds:
        ds.AcquisitionDateTime = datetime.datetime.now().strftime("%Y%m%d%H%M%S")


def _optical_path(like: Dataset | None, samples: int) -> Dataset:
    """The source's first optical path (or a new one), completed for ``samples``."""
    paths = (like.get("OpticalPathSequence") or []) if like is not None else []
    path = copy.deepcopy(paths[0]) if paths else None
    if path is None:
        path = Dataset()
        path.OpticalPathIdentifier = "0"
    if not path.get("IlluminationTypeCodeSequence"):
        path.IlluminationTypeCodeSequence = DicomSequence(
            [_code("111744", "DCM", "Brightfield illumination")]
        )
    if "IlluminationWaveLength" not in path and not path.get("IlluminationColorCodeSequence"):
        path.IlluminationColorCodeSequence = DicomSequence(
            [_code("414298005", "SCT", "Full Spectrum")]
        )
    if samples == 3 and "ICCProfile" not in path:
        path.ICCProfile = _srgb_profile()
        path.ColorSpace = "SRGB"
    if samples == 1 and "ICCProfile" in path:
        del path.ICCProfile
        if "ColorSpace" in path:
            del path.ColorSpace
    return path


def slide_context(
    like: Dataset | None,
    *,
    samples: int,
    series_description: str | None = None,
    series_number: int = 900,
) -> SlideContext:
    """Patient, study, slide and optical path attributes, from ``like`` or minimal values.

    Parameters
    ----------
    like : pydicom.Dataset, optional
        The source's header (level 0 of the slide the result overlays).
    samples : int
        Samples per pixel of the written images (3: an sRGB optical path is made).
    series_description : str, optional
        Series Description of the new series.
    series_number : int
        Series Number of the new series.

    Returns
    -------
    SlideContext
        The attributes every instance of the new series shares.
    """
    ds, lossy, methods, ratios = _copied(like)
    _complete(ds)
    ds.Modality = "SM"
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber = series_number
    if series_description:
        ds.SeriesDescription = series_description
    ds.Manufacturer = _SOFTWARE
    ds.ManufacturerModelName = _SOFTWARE
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = software_version()
    path = _optical_path(like, samples)
    label = ("", "")
    if like is not None:
        label = (str(like.get("BarcodeValue", "") or ""), str(like.get("LabelText", "") or ""))
    return SlideContext(ds, path, str(ds.SeriesInstanceUID), lossy, methods, ratios, label)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return (str(value),)
    return tuple(str(v) for v in value)


def decimal_string(value: Any) -> DSfloat:
    """``value`` as a Decimal String (DS) of at most 16 characters.

    Parameters
    ----------
    value : float-like
        The number to write.

    Returns
    -------
    pydicom.valuerep.DSfloat
        Formatted to fit DS's 16 characters (``auto_format``).
    """
    return DSfloat(float(value), auto_format=True)


def software_version() -> str:
    """The installed dicom_dask version (Software Versions of what is written)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dicom_dask")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


def _dimension_index(organization_uid: str) -> DicomSequence:
    items = []
    for pointer in (0x0048021E, 0x0048021F):  # column, row position in total pixel matrix
        item = Dataset()
        item.DimensionOrganizationUID = organization_uid
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x0048021A  # Plane Position (Slide) Sequence
        items.append(item)
    return DicomSequence(items)


def slide_level_dataset(
    context: SlideContext,
    spec: LevelSpec,
    *,
    transfer_syntax: str,
    photometric_interpretation: str,
    lossy_method: str | None,
    instance_number: int,
) -> Dataset:
    """The header of one VL Whole Slide Microscopy instance (TILED_FULL), no Pixel Data.

    A lossy ``lossy_method`` adds a Lossy Image Compression Ratio of
    [`RATIO_PLACEHOLDER`][dicom_dask.integrations.writers.dataset.RATIO_PLACEHOLDER],
    which the stream writer replaces once the frames are encoded.
    """
    ds = Dataset()
    ds.update(copy.deepcopy(context.common))
    sop_uid = _uid.UID(new_uid())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _uid.VLWholeSlideMicroscopyImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = _uid.UID(transfer_syntax)
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = _uid.VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance_number
    now = datetime.datetime.now()
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = [
        "DERIVED",
        "PRIMARY",
        spec.image_type,
        "RESAMPLED" if spec.resampled else "NONE",
    ]
    ds.BurnedInAnnotation = "YES" if spec.image_type in ("LABEL", "OVERVIEW") else "NO"
    ds.VolumetricProperties = "VOLUME"
    if spec.image_type in ("LABEL", "OVERVIEW"):
        ds.SpecimenLabelInImage = "YES"  # dciodvfy requires it of both kinds
    if spec.image_type == "LABEL":  # the Slide Label module
        ds.BarcodeValue = context.label_text[0]
        ds.LabelText = context.label_text[1]
    th, tw = spec.tile
    nx, ny = -(-spec.columns // tw), -(-spec.rows // th)
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.TotalPixelMatrixRows = spec.rows
    ds.TotalPixelMatrixColumns = spec.columns
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    ds.NumberOfFrames = nx * ny
    ds.Rows, ds.Columns = th, tw
    ds.SamplesPerPixel = spec.samples
    ds.PhotometricInterpretation = photometric_interpretation
    if spec.samples == 1:
        ds.PresentationLUTShape = "IDENTITY"
        ds.RescaleIntercept = 0  # 1C for MONOCHROME2: the stored values are the values
        ds.RescaleSlope = 1
    if spec.samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = spec.bits
    ds.BitsStored = spec.bits
    ds.HighBit = spec.bits - 1
    ds.PixelRepresentation = int(spec.signed)
    ds.ImagedVolumeWidth = spec.columns * spec.pixel_spacing[1]
    ds.ImagedVolumeHeight = spec.rows * spec.pixel_spacing[0]
    methods = [*context.lossy_methods, *([lossy_method] if lossy_method else [])]
    ratios = [*context.lossy_ratios, *([RATIO_PLACEHOLDER] if lossy_method else [])]
    if context.lossy_source or methods:
        ds.LossyImageCompression = "01"
        if methods:
            ds.LossyImageCompressionMethod = methods
            ds.LossyImageCompressionRatio = ratios
    else:
        ds.LossyImageCompression = "00"
    organization = new_uid()
    dim_org = Dataset()
    dim_org.DimensionOrganizationUID = organization
    ds.DimensionOrganizationSequence = DicomSequence([dim_org])
    ds.DimensionIndexSequence = _dimension_index(organization)
    ds.OpticalPathSequence = DicomSequence([copy.deepcopy(context.optical_path)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([_shared_groups(ds, context, spec)])
    return ds


def _shared_groups(ds: Dataset, context: SlideContext, spec: LevelSpec) -> Dataset:
    """The Shared Functional Groups item of a slide instance ``ds``: pixel measures,
    frame type and optical path."""
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [decimal_string(v) for v in spec.pixel_spacing]
    measures.SliceThickness = decimal_string(ds.ImagedVolumeDepth)
    shared.PixelMeasuresSequence = DicomSequence([measures])
    frame_type = Dataset()
    frame_type.FrameType = list(ds.ImageType)
    shared.WholeSlideMicroscopyImageFrameTypeSequence = DicomSequence([frame_type])
    ident = Dataset()
    ident.OpticalPathIdentifier = context.optical_path.OpticalPathIdentifier
    shared.OpticalPathIdentificationSequence = DicomSequence([ident])
    return shared
