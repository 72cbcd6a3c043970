"""conduit.net: bytes over file descriptors (event loop, timers, outbox). No HTTP here.

Arrives with the server issue; this package never imports conduit.http.
"""
