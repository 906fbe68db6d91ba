"""GazeX Gateway: the DICOM node, its spool, database, scheduler, delivery and CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gazex-gateway")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
