"""Stream history through the Live API, black-box with the official Python SDK and ffmpeg:
DescribeLiveStreamEventList, DescribeLiveStreamPublishedList and DescribeStreamPlayInfoList."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import publish, record, wait_until
from test_api import SECRET_ID, SECRET_KEY, call, client, error_code

DOMAIN = "live.history.test"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": DOMAIN,
        "FERROCAST_HISTORY_SAMPLE_INTERVAL_MS": "1000",
        "FERROCAST_HUB_PUBLISHER_GRACE_MS": "0",
    })


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def test_push_play_and_history(server, tmp_path):
    c = client(server)
    t0 = time.time()
    pub = publish(server.rtmp("h1"), 14, name="pub-h1")
    server.wait_media("h1")
    viewer = record(server.flv("h1"), tmp_path / "h1.flv", limit=30, name="viewer-h1")

    # While pushing: an open session is listed without an end time.
    window = {"StartTime": iso(t0 - 60), "EndTime": iso(time.time())}
    r = wait_until(lambda: call(c, "DescribeLiveStreamEventList", {**window, "StreamName": "h1"}).EventList, 10,
                   what="the push start to be recorded")
    assert r[0].StreamEndTime == "" and r[0].ClientIp == "127.0.0.1"

    rc = pub.wait(40)
    assert rc == 0, pub.tail()
    wait_until(lambda: not server.is_live("h1"), 10, what="h1 to end")
    viewer.wait(15)
    t1 = time.time()

    # Event list: start and stop with the client IP and an errcode/errmsg-style reason.
    window = {"StartTime": iso(t0 - 60), "EndTime": iso(t1)}
    r = call(c, "DescribeLiveStreamEventList", {**window, "DomainName": DOMAIN, "AppName": "live",
                                                 "StreamName": "h1", "IsStrict": 1})
    assert (r.TotalNum, r.TotalPage, r.PageNum, r.PageSize) == (1, 1, 1, 10)
    e = r.EventList[0]
    assert (e.DomainName, e.AppName, e.StreamName, e.ClientIp) == (DOMAIN, "live", "h1", "127.0.0.1")
    start, end = parse_iso(e.StreamStartTime), parse_iso(e.StreamEndTime)
    assert t0 - 5 <= start <= end <= t1 + 5, (e.StreamStartTime, e.StreamEndTime)
    assert 8 <= e.Duration <= 30, e.Duration
    assert e.StopReason == "The push client actively stopped the push", e.StopReason
    assert e.Resolution == "640*360", e.Resolution
    # Fuzzy by default, exact with IsStrict; other filters exclude it.
    assert call(c, "DescribeLiveStreamEventList", {**window, "StreamName": "h"}).TotalNum >= 1
    assert call(c, "DescribeLiveStreamEventList", {**window, "StreamName": "h", "IsStrict": 1}).TotalNum == 0
    assert call(c, "DescribeLiveStreamEventList", {**window, "AppName": "other"}).TotalNum == 0
    before = {"StartTime": iso(t0 - 3600), "EndTime": iso(t0 - 1800)}
    assert call(c, "DescribeLiveStreamEventList", before).TotalNum == 0

    # Published list: the stream with plausible start and end times.
    r = call(c, "DescribeLiveStreamPublishedList", {**window, "DomainName": DOMAIN, "StreamName": "h"})
    assert (r.TotalNum, r.TotalPage, r.PageNum, r.PageSize) == (1, 1, 1, 10)
    p = r.PublishInfo[0]
    assert (p.DomainName, p.AppName, p.StreamName, p.ClientIp) == (DOMAIN, "live", "h1", "127.0.0.1")
    assert abs(parse_iso(p.StreamStartTime) - start) <= 1 and abs(parse_iso(p.StreamEndTime) - end) <= 1
    assert p.Duration == e.Duration

    # Play info: at least one viewer and a non-zero bandwidth in some minute of the playback.
    r = call(c, "DescribeStreamPlayInfoList", {**window, "StreamName": "h1"})
    assert r.DataInfoList, "one entry per minute"
    assert all(len(d.Time) == 19 for d in r.DataInfoList)
    assert max(d.Online for d in r.DataInfoList) >= 1, [d._serialize() for d in r.DataInfoList]
    assert max(d.Bandwidth for d in r.DataInfoList) > 0
    assert sum(d.Flux for d in r.DataInfoList) > 0.1  # ~14 s of a few hundred kbit/s
    assert sum(d.Request for d in r.DataInfoList) >= 1
    # Beijing-time form, and another stream has nothing.
    bj = lambda t: datetime.fromtimestamp(t, timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    r = call(c, "DescribeStreamPlayInfoList", {"StartTime": bj(t0 - 60), "EndTime": bj(t1), "StreamName": "h1"})
    assert max(d.Online for d in r.DataInfoList) >= 1
    r = call(c, "DescribeStreamPlayInfoList", {**window, "StreamName": "nobody"})
    assert max(d.Online for d in r.DataInfoList) == 0


def test_time_range_errors(server):
    c = client(server)
    now = time.time()
    assert error_code(c, "DescribeLiveStreamEventList", {"StartTime": iso(now - 60)}) == "MissingParameter"
    assert error_code(c, "DescribeLiveStreamEventList",
                      {"StartTime": iso(now), "EndTime": iso(now - 60)}) == "InvalidParameterValue"
    assert error_code(c, "DescribeLiveStreamEventList",
                      {"StartTime": "yesterday", "EndTime": iso(now)}) == "InvalidParameterValue"
    assert error_code(c, "DescribeLiveStreamEventList",
                      {"StartTime": iso(now - 60), "EndTime": iso(now), "PageSize": 101}) == "InvalidParameterValue"
    assert error_code(c, "DescribeLiveStreamPublishedList",
                      {"StartTime": iso(now - 60), "EndTime": iso(now)}) == "MissingParameter"
    assert error_code(c, "DescribeLiveStreamPublishedList",
                      {"DomainName": DOMAIN, "StartTime": iso(now - 61 * 86400),
                       "EndTime": iso(now - 60 * 86400)}) == "InvalidParameterValue"
    assert error_code(c, "DescribeStreamPlayInfoList",
                      {"StartTime": iso(now - 2 * 86400), "EndTime": iso(now)}) == "InvalidParameterValue"
    assert error_code(c, "DescribeStreamPlayInfoList",
                      {"StartTime": iso(now - 60), "EndTime": iso(now), "AppName": "live"}) == "InvalidParameterValue"
