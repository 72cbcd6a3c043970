"""conduit.net: bytes over file descriptors (event loop, timers, outbox, TLS). No HTTP here.

This package never imports conduit.http.
"""
