"""The installed version of the package, for the User-Agent header."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("oneclickdz")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"
