"""Unit tests of intelmq_crossborder.misp_push that need no MISP server: the event UUID."""
from intelmq_crossborder import misp, misp_push

HUB = {"feed.name": "member-misp", "time.source": "2024-05-01T09:00:00+00:00", "source.ip": "192.0.2.1"}
HIDDEN = {"time.source": "2024-05-01T09:00:00+00:00", "source.ip": "192.0.2.1"}     # feed.name removed


def settings(**kw):
    return misp_push.PushSettings(recipient="community-isac", **kw)


def plain_uuid(event):
    return misp.deterministic_uuid("community-isac", misp.group_key(event, "feed_day"))


def test_uuid_is_the_plain_one_when_nothing_is_hidden():
    assert misp_push.target_event_uuid(HUB, settings()) == plain_uuid(HUB)
    assert misp_push.target_event_uuid(HUB, settings(), shown_event=dict(HUB)) == plain_uuid(HUB)
    assert misp_push.target_event_uuid(HUB, settings(uuid_key=b"k")) == plain_uuid(HUB)


def test_hidden_feed_name_cannot_be_confirmed_from_the_uuid():
    # without a key: the recipient's copy is grouped, so the UUID is the same for any feed name
    no_key = misp_push.target_event_uuid(HUB, settings(), shown_event=HIDDEN)
    assert no_key != plain_uuid(HUB) and no_key == plain_uuid(HIDDEN)
    other_feed = dict(HUB, **{"feed.name": "another-feed"})
    assert misp_push.target_event_uuid(other_feed, settings(), shown_event=HIDDEN) == no_key
    # with the hub's key: hub feeds stay apart, but the UUID is keyed (stable per key)
    keyed = misp_push.target_event_uuid(HUB, settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed not in (plain_uuid(HUB), no_key)
    assert keyed == misp_push.target_event_uuid(dict(HUB), settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed != misp_push.target_event_uuid(other_feed, settings(uuid_key=b"hub-secret"), shown_event=HIDDEN)
    assert keyed != misp_push.target_event_uuid(HUB, settings(uuid_key=b"other-secret"), shown_event=HIDDEN)


def test_merge_writes_the_event_under_the_same_uuid_the_bot_looks_up():
    out = dict(HIDDEN, **{"sharing.tlp": "GREEN"})
    hub = dict(HUB, **{"sharing.tlp": "GREEN"})
    for s in (settings(), settings(uuid_key=b"hub-secret")):
        planned = misp_push.merge(None, out, s, key_event=hub)
        assert planned.event.uuid == misp_push.target_event_uuid(hub, s, shown_event=out)
