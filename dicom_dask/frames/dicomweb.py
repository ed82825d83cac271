"""DICOMweb as a source: QIDO-RS to find instances, WADO-RS metadata for headers, and
WADO-RS frame retrieval (several frames per multipart request) for the pixels.

A DICOMweb location is written ``dicomweb+http(s)://host/prefix/studies/<study>/
series/<series>[/instances/<instance>]``. Each instance becomes a
`FrameIndex` whose "ranges" are frame numbers: the chunk
manifest maps a chunk key to ``(instance URL, frame number)`` with encoding
[`WADO`][dicom_dask.enums.FrameEncoding], and the readers fetch those frames in
the transfer syntax the server stores (``transfer-syntax=*``), decoded by our codecs.
HTTP goes through ``dicomweb-client``. Nothing here imports dask.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from dicom_dask.compat import requests_session
from dicom_dask.config import io_concurrency
from dicom_dask.enums import FrameEncoding
from dicom_dask.errors import NoImagesError, ReadError, SourceNotFoundError
from dicom_dask.frames.fetch import call_fs
from dicom_dask.frames.header import DicomHeader, PixelDataElement, PixelDescription
from dicom_dask.frames.ranges import FrameRanges
from dicom_dask.frames.storage import credentials_for, redact, strip_credentials

__all__ = ["DicomWebLocation", "fetch_frames", "index_location", "is_dicomweb", "location"]

SCHEME = "dicomweb+"
#: Frames asked for in one multipart request (the frame list is part of the URL).
FRAMES_PER_REQUEST = 128
_PATH = re.compile(
    r"^(?P<base>.+?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?"
    r"(?:/instances/(?P<instance>[0-9.]+))?/?$"
)
_TS = re.compile(r"transfer-syntax=\"?([0-9.]+)")
_CLIENTS: dict[tuple[int, str, int, int], Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class DicomWebLocation:
    """A study, series or instance on a DICOMweb server (``base`` is the service root)."""

    base: str
    study: str
    series: str | None = None
    instance: str | None = None
    #: A ready ``dicomweb_client.DICOMwebClient`` (used in this process only).
    client: Any = None

    def url(self, instance: str | None = None) -> str:
        """The ``dicomweb+`` URL of the location, or of one of its instances."""
        out = f"{SCHEME}{self.base}/studies/{self.study}"
        if self.series:
            out += f"/series/{self.series}"
        instance = instance or self.instance
        return out + f"/instances/{instance}" if instance else out


def is_dicomweb(source: Any) -> bool:
    """Whether ``source`` names a DICOMweb location."""
    return isinstance(source, DicomWebLocation) or (
        isinstance(source, str) and source.startswith(SCHEME)
    )


def location(
    source: str | Any,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> DicomWebLocation:
    """A [`DicomWebLocation`][dicom_dask.frames.dicomweb.DicomWebLocation] from a ``dicomweb+`` URL,
    or from a ``DICOMwebClient`` and UIDs."""
    if isinstance(source, DicomWebLocation):
        return source
    if isinstance(source, str):
        clean = strip_credentials(source)  # kept for this process, for this host only
        match = _PATH.match(clean.removeprefix(SCHEME))
        if not clean.startswith(SCHEME) or match is None:
            raise ReadError(
                f"{redact(source)}: expected dicomweb+http(s)://host/root/studies/<uid>"
                "[/series/<uid>[/instances/<uid>]]"
            )
        return DicomWebLocation(match["base"], match["study"], match["series"], match["instance"])
    if study_instance_uid is None:
        raise ValueError("a DICOMwebClient needs at least study_instance_uid")
    base = str(getattr(source, "base_url", "") or getattr(source, "url", "")).rstrip("/")
    base = strip_credentials(base, remember=False)  # the client keeps its own
    return DicomWebLocation(
        base, study_instance_uid, series_instance_uid, sop_instance_uid, client=source
    )


def _client(base: str, options: Any = None, client: Any = None) -> Any:
    """One ``DICOMwebClient`` per process, service root and options.

    ``options`` is the opener's ``storage_options``: a mapping of ``DICOMwebClient``
    keyword arguments (``headers``...), or a zero-argument factory returning a client
    (credentials then stay out of pickled graphs, as with filesystems).
    """
    found = None if callable(options) else credentials_for(base)
    key = (
        os.getpid(),
        base,
        id(options) if callable(options) else hash(repr(options)),
        hash(found),  # credentials given in a URL: a new pair gets a new client
    )
    with _LOCK:
        if client is not None:
            _CLIENTS[key] = client
            return client
        cached = _CLIENTS.get(key)
        if cached is not None:
            return cached
    if callable(options):
        made = options()
    else:
        from dicomweb_client.api import DICOMwebClient

        kwargs = dict(options or {})
        if "session" not in kwargs:
            kwargs["session"] = _session(found)
        made = DICOMwebClient(url=base, **kwargs)
    with _LOCK:
        return _CLIENTS.setdefault(key, made)


def _session(auth: tuple[str, str] | None) -> Any:
    """A ``requests.Session`` keeping as many connections as
    [`io_concurrency`][dicom_dask.config.io_concurrency] threads use (``requests`` keeps
    10 and drops the others after each request), with the basic auth this process was
    given for the host (never sent to another host: the session serves one client)."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    size = io_concurrency()
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(pool_connections=size, pool_maxsize=size))
    if auth is not None:
        session.auth = auth
    return session


def _transfer_syntax(client: Any, loc: DicomWebLocation, instance: str) -> UID:
    """The stored transfer syntax, read off the reply to a request for frame 1."""
    url = f"{loc.base}/studies/{loc.study}/series/{loc.series}/instances/{instance}/frames/1"
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'

    session = requests_session(client)

    def probe() -> Any:  # the reply's headers only: the frame itself is not downloaded
        with session.get(url, headers={"Accept": accept}, stream=True) as reply:
            reply.raise_for_status()
            return reply

    try:
        reply = call_fs(loc.url(instance), probe)
    except ReadError as exc:
        raise ReadError(
            f"{exc}: the server does not send the frames of this instance as stored "
            "(WADO-RS frames, transfer-syntax=*)"
        ) from exc
    found = _TS.search(reply.headers.get("Content-Type", ""))
    if found is None:  # native frames are sent without a transfer-syntax parameter
        return UID("1.2.840.10008.1.2.1")
    return UID(found.group(1))


def _index(loc: DicomWebLocation, metadata: Mapping[str, Any], syntax: UID) -> Any:
    ds = Dataset.from_json(dict(metadata), bulk_data_uri_handler=lambda *_: None)
    instance = str(ds.SOPInstanceUID)
    url = loc.url(instance)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    description = PixelDescription.from_dataset(ds, url=url)
    n = description.number_of_frames
    element = PixelDataElement(0x7FE00010, "PixelData", "OB", 0, 0, None)
    header = DicomHeader(url, ds, syntax, 0, element, description, True)
    ranges = FrameRanges(
        offsets=np.arange(1, n + 1, dtype=np.uint64),  # frame numbers
        lengths=np.zeros(n, dtype=np.uint64),  # unknown until fetched
        encoding=np.full(n, FrameEncoding.WADO.value, dtype=np.uint8),
        fragments=np.zeros(n, dtype=np.uint32),
        method="dicomweb",
    )
    from dicom_dask.frames import FrameIndex

    return FrameIndex(header=header, ranges=ranges, requests=0)


def index_location(source: str | DicomWebLocation, *, storage_options: Any = None) -> list[Any]:
    """Index the images of a DICOMweb study, series or instance.

    A series costs a QIDO-RS search for its instances, one WADO-RS metadata request,
    and one probe per instance for its stored transfer syntax (concurrently); a study
    first asks QIDO-RS for its series.
    """
    loc = location(source)
    client = _client(loc.base, storage_options, loc.client)
    where = loc.url()
    if not loc.series:  # a study: every series QIDO-RS finds in it
        found = call_fs(where, client.search_for_series, study_instance_uid=loc.study)
        series = [_value(d, "0020000E") for d in found]
        if not series:
            raise NoImagesError(f"{where}: the study has no series")
        out = []
        for uid in series:
            try:
                out += index_location(
                    DicomWebLocation(loc.base, loc.study, uid, client=loc.client),
                    storage_options=storage_options,
                )
            except NoImagesError:
                continue  # a series of reports, say
        return out
    if loc.instance:
        documents = [
            call_fs(where, client.retrieve_instance_metadata, loc.study, loc.series, loc.instance)
        ]
    else:
        listed = call_fs(
            where,
            client.search_for_instances,
            study_instance_uid=loc.study,
            series_instance_uid=loc.series,
        )
        if not listed:
            raise SourceNotFoundError(f"{where}: QIDO-RS finds no instance in this series")
        documents = call_fs(where, client.retrieve_series_metadata, loc.study, loc.series)
        missing = {_value(d, "00080018") for d in listed} - {
            _value(d, "00080018") for d in documents
        }
        if missing:
            raise ReadError(
                f"{where}: the series metadata lacks {len(missing)} instances that QIDO-RS "
                f"lists (first: {sorted(missing)[0]})"
            )
    images = [d for d in documents if "00280010" in d and "00280011" in d]
    if not images:
        raise NoImagesError(f"{where}: no instance with pixel data")
    uids = [_value(d, "00080018") for d in images]
    with ThreadPoolExecutor(min(io_concurrency(), len(uids))) as pool:
        syntaxes = list(pool.map(lambda u: _transfer_syntax(client, loc, u), uids))
    return [_index(loc, d, s) for d, s in zip(images, syntaxes, strict=True)]


def _value(document: Mapping[str, Any], tag: str) -> str:
    return str((document.get(tag) or {}).get("Value", [""])[0])


def _runs(numbers: Sequence[int]) -> list[list[int]]:
    """Consecutive frame numbers grouped (a tile row of a TILED_FULL level is one run)."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][-1] + 1 and len(runs[-1]) < FRAMES_PER_REQUEST:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def fetch_frames(
    url: str, numbers: Sequence[int], *, storage_options: Any = None
) -> dict[int, bytes]:
    """Frames ``numbers`` (1-based) of the instance at ``url``, as stored: one multipart
    request per run of consecutive frames, the runs concurrently."""
    loc = location(url)
    url = loc.url()  # without credentials
    if not (loc.series and loc.instance):
        raise ReadError(f"{url}: a frame URL must name an instance")
    client = _client(loc.base, storage_options, loc.client)
    media = (("application/octet-stream", "*"),)

    def one(run: list[int]) -> list[bytes]:
        got = call_fs(
            f"{url} frames {run[0]}-{run[-1]}",
            client.retrieve_instance_frames,
            loc.study,
            loc.series,
            loc.instance,
            run,
            media_types=media,
        )
        if len(got) != len(run):
            raise ReadError(f"{url}: asked for {len(run)} frames from {run[0]}, got {len(got)}")
        return [bytes(g) for g in got]

    runs = _runs(numbers)
    if len(runs) == 1:
        results = [one(runs[0])]
    else:
        with ThreadPoolExecutor(min(io_concurrency(), len(runs))) as pool:
            results = list(pool.map(one, runs))
    return {
        n: data
        for run, got in zip(runs, results, strict=True)
        for n, data in zip(run, got, strict=True)
    }
