"""The durable log on a tmp directory, without a server: ChannelLog (segments, rotation,
torn records, fsync policies, names) and HubState (epoch and sequence reservation)."""

from __future__ import annotations

import json
import math
import os

import pytest

from conduit import App
from conduit.server import durable
from conduit.server.durable import ChannelLog, HubState

EPOCH = "0badcafe"


def segment_files(log_dir) -> list:
    return sorted(n for n in os.listdir(log_dir) if n.endswith(".log"))


def fresh_load(data_dir, channel="c", epoch=EPOCH, history=5, **kwargs):
    """What a restarted process reads: (start_seq, records, the ChannelLog)."""
    log = ChannelLog(str(data_dir), channel, epoch, history, **kwargs)
    start_seq, records = log.load()
    return start_seq, records, log


# -- ChannelLog -----------------------------------------------------------------------------
def test_first_open_writes_a_header_and_records(tmp_path):
    log = ChannelLog(str(tmp_path), "docs", EPOCH, history=10)
    assert log.load() == (None, [])
    log.open(7)  # everything after sequence 7 will be here
    log.append(8, None, "hello")
    log.append(10, "update", '{"a":1}')
    log.append(11, None, "é\nline")
    log.close()
    (name,) = segment_files(log.dir)
    assert name == f"{8:020d}.log"
    lines = (tmp_path / "channels" / "docs" / name).read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"conduit": "channel-log", "version": 1, "channel": "docs",
                                    "epoch": EPOCH, "start_seq": 7}
    assert [json.loads(line) for line in lines[1:]] == [
        {"seq": 8, "event": None, "data": "hello"},
        {"seq": 10, "event": "update", "data": '{"a":1}'},
        {"seq": 11, "event": None, "data": "é\nline"},
    ]
    start_seq, records, _ = fresh_load(tmp_path, "docs", history=10)
    assert start_seq == 7
    assert records == [(8, None, "hello"), (10, "update", '{"a":1}'), (11, None, "é\nline")]


def test_rotation_keeps_at_least_history_and_deletes_old_segments(tmp_path):
    history, per_segment = 5, 3
    log = ChannelLog(str(tmp_path), "c", EPOCH, history, segment_events=per_segment)
    log.load()
    log.open(0)
    appended = []
    first_segment = None
    for i in range(1, 41):
        seq = 2 * i  # the sequence is global to the app: a channel's has gaps
        log.append(seq, None, f"event {i}")
        appended.append((seq, None, f"event {i}"))
        first_segment = first_segment or segment_files(log.dir)[0]
        _, records, _ = fresh_load(tmp_path, history=history, segment_events=per_segment)
        # never fewer than `history` events on disk (once that many were written)...
        assert len(records) >= min(history, len(appended))
        # ...always the newest ones, in order, without a gap...
        assert records == appended[-len(records):]
        # ...and old segments go: about history + one segment at most
        assert len(records) <= history + 2 * per_segment
        assert len(segment_files(log.dir)) <= math.ceil(history / per_segment) + 2
    log.close()
    assert first_segment not in segment_files(log.dir)


def test_load_after_rotation_gives_start_seq_and_records(tmp_path):
    log = ChannelLog(str(tmp_path), "c", EPOCH, history=4, segment_events=3)
    log.load()
    log.open(100)
    for seq in range(101, 121):
        log.append(seq, "e" if seq % 2 else None, str(seq))
    log.close()
    start_seq, records, again = fresh_load(tmp_path, history=4, segment_events=3)
    first_kept = int(segment_files(again.dir)[0][:-4])
    assert start_seq == first_kept - 1  # complete after the seq before the oldest segment
    assert records == [(s, "e" if s % 2 else None, str(s)) for s in range(first_kept, 121)]
    assert len(records) >= 4
    # A restarted log appends to its newest segment and rotates on from there.
    again.open(records[-1][0])
    for seq in range(121, 131):
        again.append(seq, None, str(seq))
    again.close()
    start_seq, records, _ = fresh_load(tmp_path, history=4, segment_events=3)
    assert [r[0] for r in records] == list(range(start_seq + 1, 131))
    assert len(records) >= 4


def test_a_torn_last_line_is_cut_and_the_good_records_remain(tmp_path):
    log = ChannelLog(str(tmp_path), "c", EPOCH, history=10)
    log.load()
    log.open(0)
    for seq in (1, 2, 3):
        log.append(seq, None, f"d{seq}")
    log.close()
    (name,) = segment_files(log.dir)
    path = os.path.join(log.dir, name)
    good_size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b'{"seq": 4, "event": null, "da')  # a crash in the middle of a write
    start_seq, records, again = fresh_load(tmp_path, history=10)
    assert (start_seq, records) == (0, [(1, None, "d1"), (2, None, "d2"), (3, None, "d3")])
    assert os.path.getsize(path) == good_size  # cut off on disk
    # Appending goes on after the good records: the next load sees a clean log.
    again.open(3)
    again.append(4, "e", "d4")
    again.close()
    assert fresh_load(tmp_path, history=10)[1][-2:] == [(3, None, "d3"), (4, "e", "d4")]


def test_segments_of_another_epoch_are_ignored(tmp_path):
    old = ChannelLog(str(tmp_path), "c", "11111111", history=10)
    old.load()
    old.open(0)
    old.append(1, None, "old epoch")
    old.close()
    assert fresh_load(tmp_path, epoch="22222222", history=10)[:2] == (None, [])


@pytest.mark.parametrize("policy", ["never", "always", 0.01, 0.5, 2])
def test_fsync_policies_accepted(tmp_path, policy):
    log = ChannelLog(str(tmp_path), "c", EPOCH, history=10, fsync=policy)
    log.load()
    log.open(0)
    for seq in range(1, 4):
        log.append(seq, None, "x")
    log.close()
    assert len(fresh_load(tmp_path, history=10)[1]) == 3


@pytest.mark.parametrize("policy", ["sometimes", "ALWAYS", "1", 0, -1, None, float("nan"),
                                    [], False])
def test_fsync_policies_refused(tmp_path, policy):
    with pytest.raises(ValueError, match="fsync"):
        ChannelLog(str(tmp_path), "c", EPOCH, history=10, fsync=policy)


def test_fsync_true_is_refused(tmp_path):
    """Bug (minor): ``fsync=True`` passes ``isinstance(fsync, (int, float)) and fsync > 0``
    and silently means "fsync at most once a second", where a caller most likely meant
    "always" (Config and SSEEvent refuse bools where numbers are expected)."""
    with pytest.raises(ValueError, match="fsync"):
        ChannelLog(str(tmp_path), "c", EPOCH, history=10, fsync=True)


@pytest.mark.parametrize("name", ["", "a/b", "/abs", ".", "..", ".hidden", "a\0b"])
def test_bad_channel_names_refused(tmp_path, name):
    with pytest.raises(ValueError, match="channel name"):
        ChannelLog(str(tmp_path), name, EPOCH, history=10)
    with pytest.raises(ValueError):
        App(data_dir=str(tmp_path / "app")).channel(name, durable=True)
    assert not (tmp_path / "channels").exists() or os.listdir(tmp_path / "channels") == []


def test_a_durable_channel_refused_after_ids_were_issued(tmp_path):
    app = App(data_dir=str(tmp_path))
    app.channel("live").publish("x")
    with pytest.raises(RuntimeError, match="before publishing"):
        app.channel("docs", durable=True)


# -- HubState -------------------------------------------------------------------------------
def test_hub_state_reservation_persists_and_a_new_state_continues_above_it(tmp_path):
    state = HubState(str(tmp_path))
    assert (state.start_seq, state.reserved) == (0, 0)
    assert len(state.epoch) == 8 and int(state.epoch, 16) >= 0
    top = state.reserve(1)
    assert top == 1 + durable.RESERVE_BLOCK
    saved = json.loads((tmp_path / "hub.json").read_text())
    assert saved == {"epoch": state.epoch, "reserved": top}
    assert not (tmp_path / "hub.json.tmp").exists()

    again = HubState(str(tmp_path))
    assert again.epoch == state.epoch
    assert again.start_seq == top  # everything the old process could issue is below
    assert again.reserve(again.start_seq) > top
    bigger = again.reserve(10 * durable.RESERVE_BLOCK)
    assert bigger == 11 * durable.RESERVE_BLOCK
    assert HubState(str(tmp_path)).start_seq == bigger


def test_a_damaged_hub_json_is_an_error_not_a_new_epoch(tmp_path):
    (tmp_path / "hub.json").write_text('{"epoch": "abc"')
    with pytest.raises(RuntimeError, match="damaged"):
        HubState(str(tmp_path))


def test_app_ids_stay_above_every_reservation_over_restarts(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "RESERVE_BLOCK", 10)  # reserve often
    issued = []
    for _ in range(3):
        app = App(data_dir=str(tmp_path))
        docs = app.channel("docs", history=100, durable=True)
        for i in range(25):
            event_id = docs.publish(i)
            seq = int(event_id.rpartition("-")[2])
            # reserved on disk before it was used
            assert json.loads((tmp_path / "hub.json").read_text())["reserved"] >= seq
            assert not issued or seq > issued[-1]
            issued.append(seq)
        # restored from disk by the next App (history 100 > 75)
        app.shutdown()
    app = App(data_dir=str(tmp_path))
    docs = app.channel("docs", history=100, durable=True)
    assert [int(i.rpartition("-")[2]) for i, _, _ in docs.events()] == issued
    app.shutdown()
