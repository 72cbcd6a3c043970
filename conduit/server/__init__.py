"""conduit.server: where conduit.net meets conduit.http (connections, streams, lifecycle)."""
