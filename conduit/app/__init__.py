"""conduit.app: App and routing, Request, handler adapters, static files.

Never touches epoll or file descriptors: it sees parsed requests and returns responses.
"""

from conduit.app.app import App, Route
from conduit.app.request import Headers, Request
from conduit.app.static import FileResponse, StaticFiles

__all__ = ["App", "Route", "Headers", "Request", "FileResponse", "StaticFiles"]
