"""Test infrastructure shipped with the package: synthetic DICOM writers and loopback servers.

Used by the test suite, the benchmarks, the notebooks and ``dicom-dask demo``. Nothing in the
runtime stages (``frames``, ``chunks``, ``images``, ``integrations``) imports it except the demo.

* [`dicom_dask.testing.synthetic`][] writes valid DICOM files (frames, slides, series, enhanced
  multi-frame) with pydicom;
* [`dicom_dask.testing.loopback`][] starts nginx, moto, the GCS emulator, Orthanc and a counting
  proxy on 127.0.0.1.
"""

from __future__ import annotations

from dicom_dask.testing.synthetic import (
    encode_frame,
    make_dataset,
    make_enhanced_dataset,
    make_slide_dataset,
    series_positions,
    write_dicom,
    write_series,
    write_slide,
)

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
