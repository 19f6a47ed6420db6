"""Delayed playback: `txDelayTime` on the push URL and AddDelayLiveStream/ResumeDelayLiveStream/
DescribeLiveDelayInfoList through the official SDK. Every protocol shows the stream that late."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from conftest import FlvReader, check_media, publish, record, wait_until
from test_api import PUSH, SECRET_ID, SECRET_KEY, call, client, error_code

ENV = {
    "FERROCAST_API_SECRET_ID": SECRET_ID,
    "FERROCAST_API_SECRET_KEY": SECRET_KEY,
    "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    # A small budget: a 20 s delay of this stream does not fit, so the spill path is exercised too.
    "FERROCAST_HUB_DELAY_MEMORY_BUDGET_BYTES": str(512 * 1024),
}


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(ENV)


class FirstFrame:
    """Reads an HTTP-FLV response in a thread and notes when the first audio/video tag arrives."""

    def __init__(self, url: str):
        self.at: float | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        try:
            with requests.get(url, stream=True, timeout=(5, 60)) as r:
                reader = FlvReader(r.raw.read)
                while True:
                    tag = reader.tag()
                    if tag.type in (8, 9) and len(tag.data) > 2:
                        self.at = time.monotonic()
                        return
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)


def test_tx_delay_time_delays_rtmp_flv_and_hls(server, tmp_path):
    t0 = time.monotonic()
    pub = publish(server.rtmp("late") + "?txDelayTime=20", 30, name="pub-delay")
    try:
        server.wait_live("late")
        flv = FirstFrame(server.flv("late"))
        rtmp_out = tmp_path / "late.flv"
        viewer = record(server.rtmp("late"), rtmp_out, limit=70, name="rtmp-delayed")
        # Nothing reaches the viewers during the delay, HLS included.
        time.sleep(15)
        assert flv.at is None and flv.error is None, flv.error
        assert not rtmp_out.exists() or rtmp_out.stat().st_size < 1024, "the RTMP viewer got media before 20 s"
        assert requests.get(server.http("/live/late.m3u8"), timeout=10).status_code != 200
        wait_until(lambda: flv.at is not None or flv.error is not None, 15, what="the first delayed frame")
        assert flv.error is None, flv.error
        delay = flv.at - t0
        assert 20.0 <= delay <= 24.0, f"first frame {delay:.1f}s after the push started"
        assert pub.wait(40) == 0, pub.tail(20)
        # The last 20 s still play out after the publisher left; then the viewer's stream ends.
        assert viewer.wait(40) == 0, viewer.tail(20)
        m = check_media(rtmp_out, min_seconds=25.0)
        assert m.video[0].key
    finally:
        pub.kill()
    assert "spilling to disk" in server.text(), "the 512 KiB budget was exceeded: the line spilled"


@pytest.mark.parametrize("value", ["601", "1.5", "abc"])
def test_bad_tx_delay_time_is_refused(server, value):
    pub = publish(server.rtmp(f"bad{len(value)}") + f"?txDelayTime={value}", 5, name=f"pub-bad-delay-{value}")
    assert pub.wait(20) != 0, "the publish must fail"
    wait_until(lambda: f"txDelayTime={value}" in server.text(), 5, what="the refusal in the log")
    assert "publish refused" in server.text()


def test_delay_through_the_api(server):
    c = client(server)
    call(c, "AddDelayLiveStream", {"DomainName": PUSH, "AppName": "live", "StreamName": "apidelay", "DelayTime": 6})
    infos = call(c, "DescribeLiveDelayInfoList", {}).DelayInfoList
    mine = [i for i in infos if i.StreamName == "apidelay"]
    assert len(mine) == 1 and mine[0].DelayInterval == 6 and mine[0].Status == 1, infos
    assert mine[0].ExpireTime.endswith("Z") and mine[0].CreateTime.endswith("Z")
    assert error_code(c, "AddDelayLiveStream", {"DomainName": PUSH, "StreamName": "x", "DelayTime": 601}) \
        == "InvalidParameterValue"
    assert error_code(c, "AddDelayLiveStream", {"DomainName": PUSH, "StreamName": "x"}) == "MissingParameter"

    def first_frame_after_push(stream: str) -> float:
        t0 = time.monotonic()
        pub = publish(server.rtmp(stream), 12, name=f"pub-{stream}")
        try:
            server.wait_live(stream)
            ff = FirstFrame(server.flv(stream))
            wait_until(lambda: ff.at is not None or ff.error is not None, 20, what="the first frame")
            assert ff.error is None, ff.error
            return ff.at - t0
        finally:
            pub.kill()
            wait_until(lambda: not server.is_live(stream), 20, what="the stream to end")

    delayed = first_frame_after_push("apidelay")
    assert delayed >= 6.0, f"the API delay applies at push start: first frame after {delayed:.1f}s"
    call(c, "ResumeDelayLiveStream", {"DomainName": PUSH, "AppName": "live", "StreamName": "apidelay"})
    assert not [i for i in call(c, "DescribeLiveDelayInfoList", {}).DelayInfoList if i.StreamName == "apidelay"]
    prompt = first_frame_after_push("apidelay")
    assert prompt < 4.0, f"no delay after ResumeDelayLiveStream: first frame after {prompt:.1f}s"
    assert error_code(c, "ResumeDelayLiveStream", {"DomainName": PUSH, "StreamName": "apidelay"}) \
        == "ResourceNotFound.StreamNotExist"
