"""Which version of a file an index describes, and whether the bytes read now are of it.

An index records each file's size and what the filesystem said identifies its version
(``etag``, ``generation``, ``mtime``: [`file_identity`][dicom_dask.frames.version.file_identity]).
A [`FileVersion`][dicom_dask.frames.version.FileVersion] carries that pair to the reads: every
ranged GET over HTTP, S3 and GCS is answered with the object's size (``Content-Range``) and
its ETag / generation / ``Last-Modified``, and every local read can ``fstat`` the
descriptor it reads through, so comparing costs no request.
[`differences`][dicom_dask.frames.version.FileVersion.differences] is the one comparison rule,
used when an index is checked at open and when pixels are read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dicom_dask.errors import StaleIndexError
from dicom_dask.frames.storage import redact

__all__ = ["FileVersion", "check_version", "file_identity", "local_identity"]

#: Keys of fsspec's ``info()`` (and of a ranged GET's reply) that identify a version of a
#: file, per identity field (HTTP, s3fs, gcsfs, adlfs, local...).
_IDENTITY_KEYS = {
    "etag": ("ETag", "etag", "Etag"),
    "generation": ("generation", "VersionId", "version_id"),
    "mtime": ("mtime", "LastModified", "Last-Modified", "last_modified", "updated"),
}

#: Fields that name one version of the content; ``mtime`` only stands in when no such
#: field is known on both sides (listings and replies format times differently).
_STRONG = ("etag", "generation")


def file_identity(info: Mapping[str, Any]) -> dict[str, str]:
    """The ``etag`` / ``generation`` / ``mtime`` an fsspec ``info()`` reports, as strings."""
    out = {}
    for name, keys in _IDENTITY_KEYS.items():
        value = next((info[k] for k in keys if info.get(k) not in (None, "")), None)
        if value is not None:
            out[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return out


def local_identity(st: os.stat_result) -> dict[str, str]:
    """The identity of a local file from its ``stat`` (what ``LocalFileSystem.info()``
    reports: the modification time)."""
    return {"mtime": str(st.st_mtime)}


def _etag(value: str) -> str:
    """An ETag without its weak marker and quotes (``W/"a"`` and ``"a"`` name one version)."""
    return value.removeprefix("W/").strip('"')


@dataclass(frozen=True)
class FileVersion:
    """The size and identity an index recorded for one file."""

    #: The file's size in bytes.
    size: int
    #: ``etag`` / ``generation`` / ``mtime`` as recorded (strings; empty when unknown, as
    #: for a relocated copy: then only the size is compared).
    identity: Mapping[str, str] = field(default_factory=dict)

    def differences(self, size: int | None, identity: Mapping[str, str]) -> list[str]:
        """What differs between this version and a file found with ``size`` (``None``:
        not reported) and ``identity``: the size, the ``etag`` and ``generation`` known on
        both sides, and the ``mtime`` only when neither of those is."""
        problems = []
        if size is not None and int(size) != int(self.size):
            problems.append(f"size {self.size} != {size}")
        shared = [k for k in _STRONG if k in self.identity and k in identity]
        if not shared and "mtime" in self.identity and "mtime" in identity:
            shared = ["mtime"]
        for key in shared:
            want, have = str(self.identity[key]), str(identity[key])
            if key == "etag":
                want, have = _etag(want), _etag(have)
            if want != have:
                problems.append(f"{key} {self.identity[key]} != {identity[key]}")
        return problems


def check_version(
    url: str,
    expected: FileVersion | None,
    *,
    size: int | None,
    identity: Mapping[str, str],
    where: str,
) -> None:
    """Raise [`StaleIndexError`][dicom_dask.errors.StaleIndexError] when the file at
    ``url``, found with ``size`` and ``identity`` while ``where`` (``"reading bytes [a,
    b)"``), is not the version ``expected`` (nothing is checked without one)."""
    if expected is None:
        return
    problems = expected.differences(size, identity)
    if problems:
        raise StaleIndexError(
            f"{redact(url)}: the file changed since it was indexed, found {where} "
            f"({'; '.join(problems)}): its frames are no longer where the index says; "
            "open or catalog it again"
        )
