"""Channel ids without a server: consecutive, never burned by a refused publish."""

import pytest

from conduit import App


def test_ids_are_consecutive_and_share_one_epoch():
    app = App()
    a, b = app.channel("a"), app.channel("b")
    ids = [a.publish("1"), b.publish("2"), a.publish({"x": 1})]
    epochs = {i.rsplit("-", 1)[0] for i in ids}
    assert len(epochs) == 1
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == [1, 2, 3]


@pytest.mark.parametrize("bad", ["a\ud800", float("nan"), object()])
def test_refused_data_does_not_use_up_an_id(bad):
    channel = App().channel("c")
    first = channel.publish("ok")
    with pytest.raises((TypeError, ValueError)):
        channel.publish(bad)
    second = channel.publish("next")
    assert int(second.rsplit("-", 1)[1]) == int(first.rsplit("-", 1)[1]) + 1
    assert [event_id for event_id, _, _ in channel.events()] == [first, second]


def test_events_of_an_empty_channel_and_after_publishes():
    channel = App().channel("e")
    assert channel.events() == []
    first = channel.publish({"a": 1}, event="x")
    assert channel.events() == [(first, "x", '{"a":1}')]
