"""Static files (the HTML pages of the examples), with no way out of their directory."""

from __future__ import annotations

import mimetypes
import os

from conduit.errors import HTTPError
from conduit.http.response import Response

_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
    ".css": "text/css", ".json": "application/json", ".svg": "image/svg+xml",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".ico": "image/x-icon", ".txt": "text/plain", ".webp": "image/webp",
    ".wasm": "application/wasm",
}
MAX_FILE_BYTES = 64 * 1024 * 1024


def content_type_for(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    ctype = _TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/json", "image/svg+xml"):
        ctype += "; charset=utf-8"
    return ctype


def FileResponse(path, content_type: str | None = None, status: int = 200) -> Response:  # noqa: N802
    """A Response with the contents of the file at ``path`` and its content type."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            body = f.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise HTTPError(404, "not found") from None
    if len(body) > MAX_FILE_BYTES:
        raise HTTPError(500, "file too large to serve")
    return Response(body, status=status, content_type=content_type or content_type_for(path))


class StaticFiles:
    """Files under one directory. ``response("a/b.html")`` or an HTTPError(404)."""

    def __init__(self, directory, index: str = "index.html") -> None:
        self.root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(self.root):
            raise ValueError(f"static directory {directory!r} does not exist")
        self.index = index

    def resolve(self, relative: str) -> str | None:
        """The real path of ``relative`` inside the root, or None (traversal, missing)."""
        if "\0" in relative or "\\" in relative:
            return None
        parts = [p for p in relative.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return None
        candidate = os.path.realpath(os.path.join(self.root, *parts))
        # Symlinks may point anywhere: check the real path, not the spelling.
        if candidate != self.root and not candidate.startswith(self.root + os.sep):
            return None
        if os.path.isdir(candidate):
            if not self.index:
                return None
            candidate = os.path.join(candidate, self.index)
        return candidate if os.path.isfile(candidate) else None

    def response(self, relative: str) -> Response:
        path = self.resolve(relative)
        if path is None:
            raise HTTPError(404, "not found")
        return FileResponse(path)
