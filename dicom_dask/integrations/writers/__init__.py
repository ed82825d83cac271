"""Writers: dask arrays back to DICOM, tiles encoded inside dask tasks.

* [`to_dicom_slide`][dicom_dask.integrations.writers.slide.to_dicom_slide]: a VL Whole
  Slide Microscopy pyramid;
* [`to_dicom_seg`][dicom_dask.integrations.writers.seg.to_dicom_seg]: a Segmentation over
  a slide or a volume;
* [`to_dicom_pmap`][dicom_dask.integrations.writers.pmap.to_dicom_pmap]: a Parametric
  Map (float results, Real World Value Mapping) over a slide or a volume;
* [`to_dicom_series`][dicom_dask.integrations.writers.series.to_dicom_series]: a volume
  rewritten as a new single-frame series (another transfer syntax).
"""

from __future__ import annotations

from dicom_dask.integrations.writers.pmap import to_dicom_pmap
from dicom_dask.integrations.writers.seg import to_dicom_seg
from dicom_dask.integrations.writers.series import to_dicom_series
from dicom_dask.integrations.writers.slide import to_dicom_slide

__all__ = ["to_dicom_pmap", "to_dicom_seg", "to_dicom_series", "to_dicom_slide"]
