"""The command line of ``dicom-dask``: its commands, arguments and help."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from dicom_dask.enums import Kind
from dicom_dask.integrations.cli_common import select_value

__all__ = ["DESCRIPTION", "build_parser"]

DESCRIPTION = """Describe, picture, index and convert DICOM slides, series and files,
reading only the bytes needed (local disk, S3, GCS, HTTP, DICOMweb). Run
"dicom-dask COMMAND --help" for a command's options.

Exit status: 0 on success, 2 for a DICOM problem (the message names the file), 1 for
anything else (such as an existing destination)."""

#: The values of ``--as`` and ``refs --kind`` (those of [`Kind`][dicom_dask.enums.Kind]).
KINDS = [k.value for k in Kind]
AS_HELP = (
    "what the source holds, instead of what dicom_dask decides from its headers (a tiled "
    "file or folder is a slide; a series, an enhanced CT/MR or one CT/MR slice a volume; "
    "any other file its frames)"
)

Command = Callable[[argparse.Namespace], int]


def _source_arguments(p: argparse.ArgumentParser) -> None:
    """The source and how to read it: every command but ``demo`` takes them."""
    p.add_argument("url", help="a file, a folder, a glob or a URL (s3://, gs://, https://...)")
    p.add_argument(
        "--select",
        type=select_value,
        metavar="INDEX|UID",
        help="which slide or series, when the folder holds several: an index or a UID as "
        '"dicom-dask info URL" lists them (a series, container or Frame of Reference UID, '
        "or a stack label)",
    )
    p.add_argument(
        "--storage-option",
        "-s",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the file system, such as anon=true (repeat as needed)",
    )


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", help="the zarr folder or URL to write")
    p.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--as", dest="as_", choices=KINDS, help=AS_HELP)
    p.add_argument(
        "--values",
        choices=["stored", "rescaled"],
        default="stored",
        help="stored: the stored values, with the modality rescale (such as Hounsfield "
        "units) as scale_factor and add_offset attributes; rescaled: the rescaled values "
        "as float32. A rescale that changes between slices is always applied.",
    )
    p.add_argument(
        "--to",
        choices=["zarr", "dicom"],
        default="zarr",
        help="zarr (the default; a slide becomes OME-Zarr) or dicom (dest is a folder: a slide "
        "or an OME-Zarr image becomes a whole-slide pyramid, a series a new series)",
    )
    p.add_argument(
        "--transfer-syntax",
        default="jpeg",
        help="with --to dicom: jpeg, jpeg2000, jpeg2000-lossless, htj2k, htj2k-lossless, "
        "jpegls, rle or explicit (jpeg)",
    )
    p.add_argument(
        "--keep-identifiers",
        action="store_true",
        help="keep the instance UIDs and patient data of the source in what is written "
        "(by default left out: DICOM PS3.15 Annex E Basic Profile; --to dicom always keeps "
        "the patient module)",
    )


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The ``dicom-dask`` parser; ``commands`` maps each command name to its function
    (``info``, ``thumbnail``, ``index``, ``refs``, ``convert``, ``demo``)."""
    parser = argparse.ArgumentParser(
        prog="dicom-dask",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, source: bool = True) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        if source:
            _source_arguments(p)
        p.set_defaults(func=commands[name])
        return p

    p = command("info", "describe a file or folder: a slide, a series or frames")
    p.add_argument("--json", action="store_true", help="print the full description as JSON")
    p = command("thumbnail", "save a small picture of a slide or a series")
    p.add_argument("output", help="the picture to write (.png or .jpg)")
    p.add_argument("--size", type=int, default=512, help="longest side in pixels (512)")
    p.add_argument("--as", dest="as_", choices=KINDS, help=AS_HELP)
    p = command("index", "save the index sidecar of a file, slide or series")
    p.add_argument("output", help="the JSON file to write")
    p = command("refs", "write kerchunk references (a slide: its OME-Zarr group)")
    p.add_argument("--output", "-o", help="the JSON file to write (default: print it)")
    p.add_argument(
        "--kind",
        choices=KINDS,
        help="what to reference (default: what dicom_dask decides, as for --as)",
    )
    _convert_arguments(
        command("convert", "copy a slide to OME-Zarr, a series or an image's frames to zarr")
    )
    p = command("demo", "generate test files and read them lazily (no network)", source=False)
    p.add_argument("--frames", type=int, default=1024, help="number of tiles (1024)")
    p.add_argument("--output", "-o", help="folder for the generated files")
    return parser
