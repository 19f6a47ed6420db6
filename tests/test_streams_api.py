"""Stream management through the Live API, black-box with the official Python SDK: DescribeLiveStreamOnlineList,
DescribeLiveStreamState, DescribeLiveStreamPushInfoList, DropLiveStream, ForbidLiveStream and ResumeLiveStream
against real ffmpeg pushes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import publish, wait_until
from test_api import SECRET_ID, SECRET_KEY, call, client, error_code, refused

DOMAIN = "live.streams.test"


@pytest.fixture(scope="module")
def server(server_factory):
    # No domain configured: the server is open, and pushes to 127.0.0.1 land on the default domain.
    return server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": DOMAIN,
    })


def triple(stream: str) -> dict:
    return {"DomainName": DOMAIN, "AppName": "live", "StreamName": stream}


def state(c, stream: str) -> str:
    return call(c, "DescribeLiveStreamState", triple(stream)).StreamState


def online(c, **filters) -> list:
    return call(c, "DescribeLiveStreamOnlineList", {"DomainName": DOMAIN, **filters}).OnlineInfo or []


def test_online_list_state_push_info_and_drop(server):
    c = client(server)
    assert state(c, "s1") == "inactive"
    pub = publish(server.rtmp("s1"), 40, name="pub-s1")
    server.wait_media("s1")

    r = call(c, "DescribeLiveStreamOnlineList", {"DomainName": DOMAIN, "AppName": "live", "StreamName": "s1"})
    assert (r.TotalNum, r.TotalPage, r.PageNum, r.PageSize) == (1, 1, 1, 10)
    info = r.OnlineInfo[0]
    assert (info.DomainName, info.AppName, info.StreamName, info.PushToDelay) == (DOMAIN, "live", "s1", 0)
    started = datetime.strptime(info.PublishTimeList[0].PublishTime, "%Y-%m-%dT%H:%M:%SZ")
    assert abs(started.replace(tzinfo=timezone.utc).timestamp() - time.time()) < 60
    assert [i.StreamName for i in online(c, AppName="other")] == []
    assert state(c, "s1") == "active"
    assert state(c, "nope") == "inactive"

    # Rates: the first query averages since the push began, a later one measures the last ~5 s.
    call(c, "DescribeLiveStreamPushInfoList", {"PushDomain": DOMAIN})
    time.sleep(6)
    r = call(c, "DescribeLiveStreamPushInfoList", {"PushDomain": DOMAIN, "AppName": "live"})
    assert r.TotalNum == 1
    p = r.DataInfoList[0]
    assert (p.StreamName, p.AppName, p.PushDomain, p.ClientIp) == ("s1", "live", DOMAIN, "127.0.0.1")
    assert p.ServerIp == "127.0.0.1"
    assert (p.Vcodec, p.Acodec, p.Resolution, p.AsampleRate) == ("H264", "AAC", "640*360", 44100)
    assert 27 <= p.VideoFps <= 33, p.VideoFps
    assert 35 <= p.AudioFps <= 50, p.AudioFps  # 44100 / 1024 ≈ 43 AAC frames per second
    assert p.VideoSpeed > 0 and p.AudioSpeed > 0, (p.VideoSpeed, p.AudioSpeed)
    assert 60_000 <= p.AudioSpeed <= 140_000, p.AudioSpeed  # -b:a 96k
    assert len(p.BeginPushTime) == 19, p.BeginPushTime

    call(c, "DropLiveStream", triple("s1"))
    rc = pub.wait(15)
    assert rc is not None and rc != 0, f"the publisher should have been disconnected: rc={rc}\n{pub.tail()}"
    wait_until(lambda: not server.is_live("s1"), 10, what="s1 to end")
    assert state(c, "s1") == "inactive"
    assert online(c) == []
    # Dropping an inactive stream succeeds; with no live stream the push info list says so.
    call(c, "DropLiveStream", triple("s1"))
    assert error_code(c, "DescribeLiveStreamPushInfoList", {}) == "FailedOperation.HasNotLivingStream"


def test_forbid_and_resume(server):
    c = client(server)
    pub = publish(server.rtmp("s2"), 40, name="pub-s2")
    server.wait_live("s2")
    resume = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    call(c, "ForbidLiveStream", {**triple("s2"), "ResumeTime": resume, "Reason": "test"})
    rc = pub.wait(15)
    assert rc is not None and rc != 0, f"forbidding should drop the publisher: rc={rc}\n{pub.tail()}"
    assert state(c, "s2") == "forbid"
    refused(publish(server.rtmp("s2"), 6, name="pub-s2-forbidden"), server, "s2")
    assert "publish refused: forbidden stream" in server.text()
    # Only that stream is forbidden.
    other = publish(server.rtmp("s3"), 6, name="pub-s3")
    server.wait_live("s3")
    other.kill()

    call(c, "ResumeLiveStream", triple("s2"))
    assert state(c, "s2") == "inactive"
    again = publish(server.rtmp("s2"), 8, name="pub-s2-resumed")
    server.wait_live("s2")
    assert state(c, "s2") == "active"
    again.kill()


def test_forbid_expires_and_errors(server):
    c = client(server)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    call(c, "ForbidLiveStream", {**triple("s4"), "ResumeTime": soon})
    assert state(c, "s4") == "forbid"
    time.sleep(4)
    assert state(c, "s4") == "inactive", "the forbid ends at ResumeTime"
    pub = publish(server.rtmp("s4"), 6, name="pub-s4")
    server.wait_live("s4")
    pub.kill()

    past = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    far = (datetime.now(timezone.utc) + timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for bad in ["tomorrow", past, far]:
        assert error_code(c, "ForbidLiveStream", {**triple("s5"), "ResumeTime": bad}) == "InvalidParameterValue"
    assert error_code(c, "ForbidLiveStream", {"DomainName": DOMAIN, "AppName": "live"}) == "MissingParameter"
    assert error_code(c, "DescribeLiveStreamState", {"DomainName": DOMAIN, "StreamName": "x"}) == "MissingParameter"
    assert error_code(c, "DropLiveStream", {"DomainName": DOMAIN, "AppName": "live"}) == "MissingParameter"
    assert error_code(c, "DescribeLiveStreamOnlineList", {"PageSize": 5}) == "InvalidParameterValue"
    assert state(c, "s5") == "inactive", "a refused forbid stores nothing"


def test_unknown_domain_once_domains_exist(server):
    c = client(server)
    call(c, "AddLiveDomain", {"DomainName": DOMAIN, "DomainType": 0})
    try:
        assert error_code(c, "DescribeLiveStreamState", {**triple("x"), "DomainName": "other.test.com"}) == \
            "ResourceNotFound.DomainNotExist"
        assert error_code(c, "ForbidLiveStream", {**triple("x"), "DomainName": "other.test.com"}) == \
            "ResourceNotFound.DomainNotExist"
        assert state(c, "x") == "inactive"
    finally:
        call(c, "DeleteLiveDomain", {"DomainName": DOMAIN, "DomainType": 0})
