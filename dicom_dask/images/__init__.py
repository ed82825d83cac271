"""Images: what users open.

In: frame indexes ([`dicom_dask.frames`][]) and chunk manifests, stores and readers
([`dicom_dask.chunks`][]). Out: [`Frames`][dicom_dask.images.instance.Frames],
[`Level`][dicom_dask.images.level.Level], [`Slide`][dicom_dask.images.slide.Slide] and
[`Volume`][dicom_dask.images.volume.Volume] with their dask arrays, geometry and lazy pixel
transforms.
The tiled and series parsers (instances -> chunk grids) live here too.
"""
