"""Episode files: the format, the crash-safe writer, the reader, and training datasets."""

from iltk.data.format import FORMAT_VERSION, DatasetError, make_env_args
from iltk.data.reader import DemoFile
from iltk.data.writer import DemoWriter, consolidate_file

__all__ = [
    "FORMAT_VERSION",
    "DatasetError",
    "DemoFile",
    "DemoWriter",
    "consolidate_file",
    "make_env_args",
]
