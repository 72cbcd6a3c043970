"""Durable channel history: an append-only log per channel on local disk, and the hub's
epoch and sequence reservation. No server to install; plain files under the data directory.

Layout under the data directory (``CONDUIT_DATA_DIR``, default ``./conduit-data``)::

    hub.json                          {"epoch": "...", "reserved": N}
    channels/<name>/<first seq>.log   segments, oldest first

A segment is JSON lines: a header ``{"conduit": "channel-log", "version": 1, "channel":
..., "epoch": ..., "start_seq": S}`` (every event of the channel with a sequence above S is
in this segment or a later one), then one record per event: ``{"seq": n, "event": ...,
"data": "..."}``.

Rules
1. ``append`` writes the record with one ``write()`` to a file opened with O_APPEND before
   ``publish`` returns: an acknowledged event survives ``kill -9`` of the process (it is in
   the kernel's page cache). The fsync policy decides what survives a power loss:
   ``fsync="never"`` (default: the OS writes back within seconds), ``"always"`` (fsync
   after every event: survives power loss, costs a disk flush per publish) or a number of
   seconds (fsync at most that often, on the next append).
2. A crash can leave a torn last line; on open it is cut off (the event was never
   acknowledged: ``publish`` had not returned).
3. Segments rotate after ``segment_events`` records; old segments are deleted once the
   newer ones hold at least ``history`` events. The log never holds much more than
   ``history + segment_events`` events.
4. Sequences are never reused across restarts: the hub reserves them in blocks, recorded
   (with fsync and an atomic rename) in ``hub.json`` before any is used; after a restart
   the sequence continues above the last reservation, so a cursor from before the restart
   never names a different event.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time

log = logging.getLogger("conduit.app")

RESERVE_BLOCK = 100_000
FSYNC_POLICIES = ("never", "always")


def default_data_dir() -> str:
    return os.environ.get("CONDUIT_DATA_DIR") or os.path.join(os.getcwd(), "conduit-data")


def new_epoch() -> str:
    return secrets.token_hex(4)


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class HubState:
    """The epoch and the sequence reservation of a data directory (rule 4)."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "hub.json")
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
            self.epoch = str(state["epoch"])
            self.reserved = int(state["reserved"])
        except FileNotFoundError:
            self.epoch = new_epoch()
            self.reserved = 0
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{self.path} is damaged ({exc}); move it away to start a "
                               "new epoch (old cursors will get a reset event)") from exc
        self.start_seq = self.reserved  # everything issued before this start is below it

    def reserve(self, at_least: int) -> int:
        """Record a new reservation covering ``at_least``; returns its upper bound."""
        self.reserved = max(self.reserved, at_least) + RESERVE_BLOCK
        _write_atomic(self.path, json.dumps({"epoch": self.epoch, "reserved": self.reserved}))
        return self.reserved


class ChannelLog:
    """The on-disk log of one channel (rules 1-3)."""

    def __init__(self, data_dir: str, channel: str, epoch: str, history: int,
                 fsync="never", segment_events: int | None = None) -> None:
        if not (fsync in FSYNC_POLICIES or (type(fsync) in (int, float) and fsync > 0)):
            raise ValueError("fsync must be 'never', 'always' or a number of seconds > 0")
        if not channel or "/" in channel or channel.startswith(".") or "\0" in channel:
            raise ValueError(f"channel name {channel!r} cannot be used as a directory name")
        self.dir = os.path.join(data_dir, "channels", channel)
        os.makedirs(self.dir, exist_ok=True)
        self.channel = channel
        self.epoch = epoch
        self.history = history
        self.fsync = fsync
        self.segment_events = segment_events or max(1000, history)
        self._fd = -1
        self._segment_count = 0
        self._last_fsync = time.monotonic()
        self._segments: list = []  # (first seq, path, event count)

    # -- reading -----------------------------------------------------------------------
    def load(self):
        """(start_seq, records) from disk: the records are (seq, event, data) in order."""
        names = sorted((n for n in os.listdir(self.dir) if n.endswith(".log")),
                       key=lambda n: int(n[:-4]))
        records = []
        start_seq = None
        for name in names:
            path = os.path.join(self.dir, name)
            header, segment_records = self._read_segment(path, is_last=name == names[-1])
            if header is None:
                continue
            if header.get("epoch") != self.epoch:
                log.warning("channel %s: %s is from another epoch; ignoring it",
                            self.channel, path)
                continue
            if start_seq is None:
                start_seq = int(header["start_seq"])
            records.extend(segment_records)
            self._segments.append((int(name[:-4]), path, len(segment_records)))
        return start_seq, records

    def restore(self, complete_after: int):
        """Load the log and open it for appending: ``(complete_after, kept)``, the newest
        ``history`` records and the sequence after which they are complete (the log's
        start, or the newest record not kept; ``complete_after`` if the log is new)."""
        start_seq, records = self.load()
        if start_seq is not None:
            complete_after = start_seq
        kept = records[-self.history:] if self.history else []
        if len(records) > len(kept):
            complete_after = records[len(records) - len(kept) - 1][0]
        self.open(records[-1][0] if records else complete_after)
        if records:
            log.info("channel %s: %d events restored from %s", self.channel, len(kept),
                     self.dir)
        return complete_after, kept

    def _read_segment(self, path: str, is_last: bool):
        with open(path, "rb") as f:
            raw = f.read()
        good = 0
        header = None
        records = []
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # rule 2: a torn last line
            try:
                item = json.loads(line)
            except ValueError:
                break
            if header is None:
                if item.get("conduit") != "channel-log":
                    log.error("channel %s: %s is not a conduit log; ignoring it",
                              self.channel, path)
                    return None, []
                header = item
            else:
                records.append((int(item["seq"]), item.get("event"), item["data"]))
            good += len(line)
        if good < len(raw):
            if not is_last:
                log.error("channel %s: damaged record in %s; later records of that segment "
                          "are skipped", self.channel, path)
            else:
                log.warning("channel %s: cutting a torn record at the end of %s",
                            self.channel, path)
                with open(path, "r+b") as f:
                    f.truncate(good)
        return header, records

    # -- writing -----------------------------------------------------------------------
    def open(self, start_seq: int) -> None:
        """Open the newest segment for appending (or start the first one)."""
        if self._segments:
            first, path, count = self._segments[-1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._segment_count = count
        else:
            self._new_segment(start_seq + 1, start_seq)

    def _new_segment(self, first_seq: int, start_seq: int) -> None:
        path = os.path.join(self.dir, f"{first_seq:020d}.log")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        header = {"conduit": "channel-log", "version": 1, "channel": self.channel,
                  "epoch": self.epoch, "start_seq": start_seq}
        os.write(fd, (json.dumps(header) + "\n").encode())
        os.fsync(fd)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segments.append((first_seq, path, 0))
        self._segment_count = 0

    def append(self, seq: int, event, data: str) -> None:
        if self._segment_count >= self.segment_events:
            self._new_segment(seq, seq - 1)
            self._drop_old_segments()
        record = json.dumps({"seq": seq, "event": event, "data": data},
                            ensure_ascii=False, separators=(",", ":")) + "\n"
        payload = record.encode("utf-8")
        written = os.write(self._fd, payload)
        if written != len(payload):  # O_APPEND regular files write all or fail, but check
            raise OSError(f"short write to the log of channel {self.channel}")
        self._segment_count += 1
        first, path, count = self._segments[-1]
        self._segments[-1] = (first, path, count + 1)
        policy = self.fsync
        if policy == "always":
            os.fsync(self._fd)
        elif policy != "never":
            now = time.monotonic()
            if now - self._last_fsync >= policy:
                os.fsync(self._fd)
                self._last_fsync = now

    def _drop_old_segments(self) -> None:
        # Keep the newest segments that together hold at least `history` events.
        kept = 0
        keep_from = len(self._segments)
        for i in range(len(self._segments) - 1, -1, -1):
            keep_from = i
            kept += self._segments[i][2]
            if kept >= self.history:
                break
        for _, path, _ in self._segments[:keep_from]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        del self._segments[:keep_from]

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
