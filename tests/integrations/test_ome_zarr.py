"""``to_ome_zarr``: computed maps over a real slide and a CT volume to OME-Zarr pyramids,
written by a cluster's workers into S3, read back by ngff-zarr and ome-zarr-py."""

from __future__ import annotations

import collections
import pickle

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dicom_dask
from dicom_dask.errors import DestinationExistsError, DicomDaskError, LayoutError
from dicom_dask.integrations import ome_zarr as writer
from dicom_dask.integrations.ome_zarr_pyramid import Target, pyramid_graph
from dicom_dask.integrations.writers import options as write_options
from tests.conftest import process_cluster

ngff_zarr = pytest.importorskip("ngff_zarr")
ome_reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")

SECRET_ID = "AKIAOMEZARRNOTINGRAPHS"
SECRET = "ome-zarr-secret-never-in-a-graph"


@pytest.fixture(scope="module")
def cmu1(real_dir):
    return dicom_dask.open_slide(real_dir / "wsi" / "cmu1_napari")


def tissue_labels(block: np.ndarray) -> np.ndarray:
    """0 background, 1 pale tissue, 2 dark tissue (a stand-in for a segmentation model)."""
    grey = block.mean(axis=-1)
    return np.select([grey > 215, grey > 150], [0, 1], 2).astype(np.uint8)


def darkness(block: np.ndarray) -> np.ndarray:
    """A float map in [0, 1] (a stand-in for a probability map)."""
    return (1.0 - block.mean(axis=-1) / 255.0).astype(np.float32)


def _mode_reference(a: np.ndarray) -> np.ndarray:
    """The most frequent value of each 2 x 2 window, ties to the first in reading order."""
    h, w = -(-a.shape[0] // 2), -(-a.shape[1] // 2)
    padded = np.pad(a, [(0, a.shape[0] % 2), (0, a.shape[1] % 2)], mode="edge")
    out = np.empty((h, w), dtype=a.dtype)
    for i in range(h):
        for j in range(w):
            window = [padded[2 * i, 2 * j], padded[2 * i, 2 * j + 1]]
            window += [padded[2 * i + 1, 2 * j], padded[2 * i + 1, 2 * j + 1]]
            counts = collections.Counter(window)
            top = max(counts.values())
            out[i, j] = next(v for v in window if counts[v] == top)
    return out


def _scales(multiscales) -> list[list[float]]:
    return [
        next(t["scale"] for t in d["coordinateTransformations"] if t["type"] == "scale")
        for d in multiscales["datasets"]
    ]


# -- a cluster's workers write label and float maps of CMU-1 into S3 --------------------------
@pytest.mark.slow
def test_maps_over_cmu1_written_by_the_workers_into_s3(cmu1, s3_server, tmp_path, monkeypatch):
    import cloudpickle
    import s3fs
    from distributed import get_task_stream

    server, _ = s3_server
    options = {"endpoint_url": server.endpoint, "key": SECRET_ID, "secret": SECRET}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    fs.mkdir("results")
    level0 = cmu1.levels[0]
    maps = {
        "labels": level0.map_blocks(tissue_labels, drop_axis=2, dtype=np.uint8),
        "darkness": level0.map_blocks(darkness, drop_axis=2, dtype=np.float32),
    }
    graphs: list[bytes] = []
    real_compute = write_options.compute

    def spy(*collections_, **kwargs):
        graphs.extend(cloudpickle.dumps(dict(c.__dask_graph__())) for c in collections_)
        return real_compute(*collections_, **kwargs)

    monkeypatch.setattr(write_options, "compute", spy)
    with process_cluster() as client, get_task_stream(client) as stream:
        workers = set(client.scheduler_info()["workers"])
        for name, result in maps.items():
            dicom_dask.to_ome_zarr(
                result,
                f"s3://results/{name}.ome.zarr",
                like=cmu1,
                levels=3,
                storage_options=options,
                progress=False,
            )
    # the writing tasks ran on the workers; the credentials were in no graph
    writes = [t for t in stream.data if str(t["key"]).find("ome-zarr-write") >= 0]
    assert len(writes) >= 2 * 2
    assert {t["worker"] for t in writes} <= workers
    assert graphs and all(SECRET.encode() not in g and SECRET_ID.encode() not in g for g in graphs)
    spacing_um = [v * 1000 for v in cmu1.pixel_spacings[0]]
    for name, result in maps.items():
        expected = result.compute(scheduler="threads")
        fs.get(f"results/{name}.ome.zarr", str(tmp_path / name), recursive=True)
        # ngff-zarr
        image = ngff_zarr.from_ngff_zarr(str(tmp_path / name))
        assert len(image.images) == 3
        np.testing.assert_array_equal(np.asarray(image.images[0].data), expected)
        assert image.images[0].scale == pytest.approx({"y": spacing_um[0], "x": spacing_um[1]})
        assert image.images[2].scale["x"] == pytest.approx(4 * spacing_um[1])
        assert image.images[0].axes_units == {"y": "micrometer", "x": "micrometer"}
        # ome-zarr-py
        nodes = list(ome_reader.Reader(ome_io.parse_url(str(tmp_path / name)))())
        pyramid = nodes[0].data
        assert len(pyramid) == 3
        np.testing.assert_array_equal(np.asarray(pyramid[0]), expected)
        assert _scales(nodes[0].metadata["multiscales"][0] if "multiscales" in nodes[0].metadata
                       else zarr.open_group(str(tmp_path / name)).attrs["ome"]["multiscales"][0]
                       )[0] == pytest.approx(spacing_um)  # fmt: skip
        assert pyramid[1].shape == tuple(-(-n // 2) for n in expected.shape)
    # the label map's lower levels are modes, not means (values stay labels)
    labels = zarr.open_group(str(tmp_path / "labels"), mode="r")
    assert set(np.unique(labels["2"][...])) <= {0, 1, 2}
    np.testing.assert_array_equal(labels["1"][...], _mode_reference(labels["0"][...]))
    # nothing of the DICOM header is in the output
    assert "dicom_dask" not in labels.attrs
    assert "CMU" not in str(dict(labels.attrs))


def test_patch_score_map_at_its_own_pixel_spacing(cmu1, tmp_path):
    patch = 16
    grey = cmu1.levels[0].mean(axis=-1)
    h, w = (grey.shape[0] // patch) * patch, (grey.shape[1] // patch) * patch
    scores = da.coarsen(np.mean, grey[:h, :w].rechunk(2 * 1024), {0: patch, 1: patch}) / 255
    spacing = tuple(v * patch for v in cmu1.pixel_spacings[0])
    with pytest.raises(LayoutError, match=r"pixel_spacing") as info:
        dicom_dask.to_ome_zarr(scores, tmp_path / "no.ome.zarr", like=cmu1, progress=False)
    assert f"{scores.shape[0]} x {scores.shape[1]}" in str(info.value)
    dicom_dask.to_ome_zarr(
        scores, tmp_path / "scores.ome.zarr", like=cmu1, pixel_spacing=spacing, levels=2,
        progress=False,
    )  # fmt: skip
    image = ngff_zarr.from_ngff_zarr(str(tmp_path / "scores.ome.zarr"))
    assert image.images[0].scale == pytest.approx({"y": spacing[0] * 1e3, "x": spacing[1] * 1e3})
    assert image.images[1].scale["y"] == pytest.approx(2 * spacing[0] * 1e3)
    np.testing.assert_allclose(np.asarray(image.images[0].data), scores.compute(), rtol=1e-6)


def test_slide_rgb_keeps_its_colours_and_writes_missing_levels(cmu1, tmp_path):
    group = dicom_dask.to_ome_zarr(cmu1, tmp_path / "s.ome.zarr", levels=4, progress=False)
    assert group["0"].shape == (3, *cmu1.levels[0].shape[:2])
    np.testing.assert_array_equal(group["0"][...], np.moveaxis(cmu1.levels[0].compute(), -1, 0))
    assert [group[str(k)].shape[1] for k in range(4)] == [
        -(-cmu1.levels[0].shape[0] // 2**k) for k in range(4)
    ]
    level1 = group["1"][...].astype(np.int32)
    assert np.abs(level1 - writer.downsample(group["0"][...], "mean")).max() == 0
    nodes = list(ome_reader.Reader(ome_io.parse_url(str(tmp_path / "s.ome.zarr")))())
    assert len(nodes[0].data) == 4
    models = pytest.importorskip("ome_zarr_models.v05.image")
    models.Image.from_zarr(zarr.open_group(tmp_path / "s.ome.zarr", mode="r"))
    # a Level is its own like=: the same level 0 and scale
    level = dicom_dask.to_ome_zarr(cmu1.pyramid[0], tmp_path / "l.ome.zarr", levels=1)
    np.testing.assert_array_equal(level["0"][...], group["0"][...])
    assert (
        _scales(level.attrs["ome"]["multiscales"][0])
        == _scales(group.attrs["ome"]["multiscales"][0])[:1]
    )


# -- volumes ---------------------------------------------------------------------------------
def test_volume_in_millimetres_with_its_origin(real_dir, tmp_path):
    volume = dicom_dask.open_volume(real_dir / "volume_series" / "ct_3slice")
    body = (volume.array > -300).astype(np.uint8)
    dicom_dask.to_ome_zarr(body, tmp_path / "body.ome.zarr", like=volume, levels=2, progress=False)
    image = ngff_zarr.from_ngff_zarr(str(tmp_path / "body.ome.zarr"))
    origin = volume.affine[:3, 3]
    expected = [float(origin @ volume.direction[:, i]) for i in range(3)]
    assert image.images[0].dims == ("z", "y", "x")
    assert image.images[0].axes_units == {a: "millimeter" for a in "zyx"}
    assert image.images[0].scale == pytest.approx(dict(zip("zyx", volume.spacing, strict=True)))
    assert image.images[0].translation == pytest.approx(dict(zip("zyx", expected, strict=True)))
    np.testing.assert_array_equal(np.asarray(image.images[0].data), body.compute())
    assert image.images[1].data.shape == (3, 256, 256)  # z is kept, y and x halved
    # the CT itself: means, and the same geometry
    dicom_dask.to_ome_zarr(volume, tmp_path / "ct.ome.zarr", levels=2, progress=False)
    ct = ngff_zarr.from_ngff_zarr(str(tmp_path / "ct.ome.zarr"))
    assert ct.images[0].translation == pytest.approx(dict(zip("zyx", expected, strict=True)))
    np.testing.assert_array_equal(np.asarray(ct.images[0].data), volume.array.compute())


# -- NGFF 0.4 ---------------------------------------------------------------------------------
def test_ngff_04_is_zarr_v2_and_reads_back(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (300, 420, 3), dtype=np.uint8)
    dicom_dask.to_ome_zarr(
        rgb, tmp_path / "v04.ome.zarr", pixel_spacing=(0.0005, 0.0005), levels=3,
        chunks=64, ngff_version="0.4", progress=False,
    )  # fmt: skip
    group = zarr.open_group(tmp_path / "v04.ome.zarr", mode="r")
    assert group.metadata.zarr_format == 2
    assert group.attrs["multiscales"][0]["version"] == "0.4"
    nodes = list(ome_reader.Reader(ome_io.parse_url(str(tmp_path / "v04.ome.zarr")))())
    assert len(nodes[0].data) == 3
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), np.moveaxis(rgb, -1, 0))
    image = ngff_zarr.from_ngff_zarr(str(tmp_path / "v04.ome.zarr"))
    assert image.images[0].dims == ("c", "y", "x")
    assert image.images[0].scale["x"] == pytest.approx(0.5)
    assert image.images[2].data.shape == (3, 75, 105)


# -- downsampling ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9), elements=st.integers(0, 3)
    )
)
def test_mode_of_each_window(labels):
    np.testing.assert_array_equal(writer.downsample(labels, "mode"), _mode_reference(labels))


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_label_pyramid_is_modes_across_blocks(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (203, 150), dtype=np.int16)
    path = tmp_path_factory.mktemp("labels") / "l.ome.zarr"
    dicom_dask.to_ome_zarr(
        da.from_array(labels, chunks=64), path, pixel_spacing=(0.001, 0.001), levels=4,
        chunks=16, progress=False,
    )  # fmt: skip
    group = zarr.open_group(path, mode="r")
    expected = labels
    for k in range(4):
        np.testing.assert_array_equal(group[str(k)][...], expected)
        expected = _mode_reference(expected)
    assert group.attrs["ome"]["multiscales"][0]["type"] == "mode"


def test_mean_rounds_and_keeps_the_dtype():
    block = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    assert writer.downsample(block).tolist() == [[1]]
    assert writer.downsample(np.array([[250, 255, 7]], dtype=np.uint8)).tolist() == [[253, 7]]
    floats = np.array([[0.5, 1.0], [0.0, 0.5]], dtype=np.float32)
    assert writer.downsample(floats).dtype == np.float32
    assert writer.downsample(floats).tolist() == [[0.5]]


# -- bad input -------------------------------------------------------------------------------
def test_bad_input_is_named(tmp_path, cmu1):
    array = np.zeros((64, 64), dtype=np.uint8)
    with pytest.raises(LayoutError, match=r"like=.*pixel_spacing"):
        dicom_dask.to_ome_zarr(array, tmp_path / "a", progress=False)
    dicom_dask.to_ome_zarr(array, tmp_path / "a", pixel_spacing=(1, 1), progress=False)
    with pytest.raises(DestinationExistsError, match=r"already exists.*overwrite=True") as info:
        dicom_dask.to_ome_zarr(array, tmp_path / "a", pixel_spacing=(1, 1), progress=False)
    assert str(tmp_path / "a") in str(info.value)
    dicom_dask.to_ome_zarr(
        array + 1, tmp_path / "a", pixel_spacing=(1, 1), overwrite=True, progress=False
    )
    assert zarr.open_group(tmp_path / "a", mode="r")["0"][0, 0] == 1
    for kwargs, match in [
        ({"pixel_spacing": (1, 1), "levels": 0}, r"levels=0"),
        ({"pixel_spacing": (1, 1), "method": "median"}, r"method='median'"),
        ({"pixel_spacing": (1, 1), "ngff_version": "0.3"}, r"ngff_version='0.3'"),
        ({"pixel_spacing": (1, 1, 1)}, r"expected 2 values"),
        ({"like": "slide"}, r"like= is a str"),
        ({"pixel_spacing": (1, 1), "compressor": "lz5"}, r"compressor='lz5'"),
    ]:
        with pytest.raises(DicomDaskError, match=match):
            dicom_dask.to_ome_zarr(array, tmp_path / "b", progress=False, **kwargs)
    with pytest.raises(LayoutError, match=r"shape \(2, 2, 2, 2, 2, 2\)"):
        dicom_dask.to_ome_zarr(
            np.zeros((2,) * 6), tmp_path / "c", pixel_spacing=(1, 1), progress=False
        )
    with pytest.raises(LayoutError, match=r"no level of like="):
        dicom_dask.to_ome_zarr(array, tmp_path / "d", like=cmu1, progress=False)


def test_graph_is_one_task_per_block():
    """The first stage is one task per input block (fused with the source's tasks)."""
    source = da.zeros((8192, 8192), dtype=np.uint8, chunks=2048)
    target = Target("/nowhere", None, "run", 3)
    graph = pyramid_graph(source, target=target, levels=7, edges=(1024, 1024), method="mode")
    layers = dict(graph.__dask_graph__().layers)
    first = [k for k in layers if k.startswith("ome-zarr-write-0-")]
    assert first and len(layers[first[0]]) == 16  # 4 x 4 blocks write levels 0 and 1
    assert len(pickle.dumps(dict(graph.__dask_graph__()))) < 200_000


def test_identifiers_only_on_request(real_dir, tmp_path):
    volume = dicom_dask.open_volume(real_dir / "volume_series" / "ct_3slice")
    plain = dicom_dask.to_ome_zarr(volume, tmp_path / "plain", levels=1, progress=False)
    assert "dicom_dask" not in plain.attrs
    assert "ct_3slice" not in str(dict(plain.attrs))
    kept = dicom_dask.to_ome_zarr(
        volume, tmp_path / "kept", levels=1, keep_identifiers=True, progress=False
    )
    header = kept.attrs["dicom_dask"]["header"]
    assert header["00080060"]["Value"] == ["CT"]  # Modality
    assert "00100010" in header  # Patient's Name, as the source has it
    assert "7FE00010" not in header  # no pixel data
    assert "ct_3slice" in kept.attrs["dicom_dask"]["urls"][0]
