"""WebRTC, black-box: WHEP playback of RTMP streams (H.264 + AAC bridged to Opus) by aiortc, WHIP ingest by
ffmpeg 9.0.2 (`-f whip`, H.264 + Opus) and aiortc played back over RTMP and HTTP-FLV (Opus bridged to AAC) and
WHEP, the B-frame refusal, push authentication on WHIP, and the signalling details (CORS, trickle ICE PATCH, DELETE)."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests

from conftest import Proc, check_media, decode_errors, ffmpeg9, probe_packets, publish, record

webrtc_client = pytest.importorskip("webrtc_client", reason="aiortc is not installed: pip install -r tests/requirements.txt")

SECRET_ID = "AKIDferrocastTEST00000000000000000000"
SECRET_KEY = "ferrocastSecretKeyTEST0000000000"
PUSH = "push.rtc.example.com"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "300"})


def whip_ffmpeg(url: str, seconds: float, token: str | None = None, name: str = "whip") -> Proc:
    """ffmpeg 9.0.2 publishes testsrc2 (H.264 baseline, no B-frames) + a 440 Hz tone (Opus) over WHIP."""
    argv = [ffmpeg9(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", f"{seconds}", "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-profile:v", "baseline", "-bf", "0", "-g", "30", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "64k"]
    if token:
        argv += ["-authorization", token]
    argv += ["-f", "whip", url]
    return Proc(name, argv, seconds + 30)


def test_whep_plays_an_rtmp_stream_with_opus_audio(server):
    pub = publish(server.rtmp("rtmp2whep"), 20, tune="zerolatency")
    server.wait_media("rtmp2whep")
    r = webrtc_client.play(server.http("/whep/live/rtmp2whep"), 5, trickle=True)
    # Trickle ICE (RFC 9725 PATCH): the client's candidates are taken (204), an ICE restart is refused (422).
    assert (r.trickle, r.restart) == (204, 422), (r.trickle, r.restart)
    assert r.status == 201, r.body
    assert r.location and r.location.startswith("/whep/live/rtmp2whep/"), r.location
    assert r.deleted == 200
    # 5 s at 30 fps: the GOP cache start plus live frames, all decoded by aiortc's H.264 decoder.
    assert r.video_frames >= 100, f"{r.video_frames} video frames"
    assert (r.width, r.height) == (640, 360)
    # AAC 44.1 kHz mono from the publisher, Opus 48 kHz from the bridge: 20 ms frames.
    assert r.audio_frames >= 150, f"{r.audio_frames} audio frames"
    assert r.audio_rate == 48000
    m = server.metrics()
    assert m.get("ferrocast_audio_transcode_errors_total") == 0
    pub.kill()


def test_whep_viewers_share_one_aac_to_opus_bridge(server):
    pub = publish(server.rtmp("shared"), 20, tune="zerolatency")
    server.wait_media("shared")
    import asyncio

    async def two():
        return await asyncio.gather(*[webrtc_client.whep_play(server.http("/whep/live/shared"), 4) for _ in range(2)])

    before = server.text().count("aac to opus bridge started stream=localhost/live/shared")
    results = asyncio.run(asyncio.wait_for(two(), 30))
    assert all(r.status == 201 and r.audio_frames > 100 and r.video_frames > 60 for r in results), \
        [(r.status, r.video_frames, r.audio_frames) for r in results]
    started = server.text().count("aac to opus bridge started stream=localhost/live/shared") - before
    assert started == 1, f"{started} bridges for two viewers of one stream"
    pub.kill()


def test_whep_refuses_h264_with_b_frames(server):
    pub = publish(server.rtmp("bframes"), 15)  # libx264 default preset: B-frames
    server.wait_media("bframes")
    time.sleep(0.5)
    before = server.metrics().get("ferrocast_webrtc_bframes_refused_total")
    r = webrtc_client.play(server.http("/whep/live/bframes"), 2)
    assert r.status == 422, (r.status, r.body)
    assert "B-frames" in r.body
    assert server.metrics().get("ferrocast_webrtc_bframes_refused_total") == before + 1
    pub.kill()


def test_whep_unknown_stream_is_404(server):
    r = webrtc_client.play(server.http("/whep/live/nobody"), 1)
    assert r.status == 404, r.body


def test_signalling_cors_patch_delete(server):
    r = requests.options(server.http("/whep/live/x"), timeout=5)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in r.headers["Access-Control-Expose-Headers"]
    r = requests.patch(server.http("/whip/live/x/0123"), data="a=candidate:1", timeout=5)
    assert r.status_code == 415 and "trickle-ice-sdpfrag" in r.text
    r = requests.patch(server.http("/whip/live/x/0123"), data="a=end-of-candidates\r\n", timeout=5,
                       headers={"Content-Type": "application/trickle-ice-sdpfrag"})
    assert r.status_code == 404
    r = requests.delete(server.http("/whep/live/x/0123"), timeout=5)
    assert r.status_code == 404
    r = requests.post(server.http("/whip"), data="v=0", timeout=5)
    assert r.status_code == 400 and "Bearer" in r.text
    r = requests.post(server.http("/whip/live/garbage"), data="not sdp", timeout=5)
    assert r.status_code == 400


def test_ffmpeg_whip_plays_over_rtmp_flv_and_whep(server, tmp_path):
    pub = whip_ffmpeg(server.http("/whip/live/ffwhip"), 14)
    server.wait_media("ffwhip", timeout=20)
    viewers = {
        "rtmp": record(server.rtmp("ffwhip"), tmp_path / "rtmp.flv", extra_in=["-t", "5"], limit=30, name="rtmp-view"),
        "flv": record(server.flv("ffwhip"), tmp_path / "flv.flv", extra_in=["-t", "5"], limit=30, name="flv-view"),
    }
    r = webrtc_client.play(server.http("/whep/live/ffwhip"), 4)
    assert r.status == 201, r.body
    assert r.video_frames >= 80 and (r.width, r.height) == (640, 360), (r.video_frames, r.width, r.height)
    assert r.audio_frames >= 120 and r.audio_rate == 48000, r.audio_frames
    for name, v in viewers.items():
        assert v.wait(30) == 0, f"{name} viewer: {v.tail()}"
        # Opus from the WHIP publisher arrives as AAC (the Opus -> AAC bridge) on RTMP and HTTP-FLV.
        check_media(tmp_path / f"{name}.flv", acodec="aac", min_seconds=3.0, max_gap=0.2)
    pub.kill()


def test_aiortc_whip_publish_plays_over_flv(server, tmp_path):
    import asyncio
    import threading

    result = {}

    def push():
        result["r"] = asyncio.run(asyncio.wait_for(
            webrtc_client.whip_publish(server.http("/whip/live/aiowhip"), 12), 40))

    t = threading.Thread(target=push, daemon=True)
    t.start()
    server.wait_media("aiowhip", timeout=20)
    v = record(server.flv("aiowhip"), tmp_path / "aio.flv", extra_in=["-t", "4"], limit=30, name="flv-aio")
    assert v.wait(30) == 0, v.tail()
    # aiortc's encoder picks its own frame rate under load; check codecs, resolution and decodability only.
    m = probe_packets(tmp_path / "aio.flv")
    assert m.video_stream and m.video_stream["codec_name"] == "h264", m.summary()
    assert (m.video_stream["width"], m.video_stream["height"]) == (640, 360), m.summary()
    assert m.audio_stream and m.audio_stream["codec_name"] == "aac" and len(m.audio) > 50, m.summary()
    assert len(m.video) > 20, m.summary()
    # A camera/encoder-paced source has a variable frame rate: ffmpeg's null muxer, rounding to its guessed 1/fps
    # time base, reports two frames closer than one tick as "non monotonically increasing dts"; not a stream fault.
    errors = [e for e in decode_errors(tmp_path / "aio.flv") if "non monotonically increasing dts to muxer" not in e]
    assert not errors, errors
    t.join(40)
    assert result.get("r", (0,))[0] == 201, result


def test_vp8_whip_publish_plays_over_whep(server):
    """A publisher that offers only VP8 (aiortc here) gets VP8; WHEP viewers get it as is (H.264-only publishers
    are preferred for everything else: RTMP/FLV carry VP8 only as Enhanced RTMP `vp08`, HLS refuses it)."""
    import asyncio
    import threading

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", asyncio.run(asyncio.wait_for(
        webrtc_client.whip_publish(server.http("/whip/live/vp8"), 12, codec="VP8"), 40))), daemon=True)
    t.start()
    server.wait_live("vp8", timeout=20)
    time.sleep(1.5)
    r = webrtc_client.play(server.http("/whep/live/vp8"), 5)
    assert r.status == 201, r.body
    assert r.video_frames >= 30 and (r.width, r.height) == (640, 360), (r.video_frames, r.width, r.height)
    assert r.audio_frames >= 100, r.audio_frames
    # The HLS/DASH family refuses VP8 with a clear error instead of serving a stream no player can decode.
    for path, word in [("/live/vp8.m3u8", "MPEG-TS"), ("/live/vp8.m3u8?format=fmp4", "fMP4"), ("/live/vp8.mpd", "DASH")]:
        refused = requests.get(server.http(path), timeout=15)
        assert refused.status_code == 400 and word in refused.text, (path, refused.status_code, refused.text)
    t.join(40)
    assert result.get("r", (0,))[0] == 201, result


@pytest.fixture(scope="module")
def auth_server(server_factory):
    return server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    })


def test_whip_push_authentication(auth_server):
    tc = pytest.importorskip("tencentcloud.live.v20180801.live_client")
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.live.v20180801 import models

    http = HttpProfile(endpoint=f"127.0.0.1:{auth_server.http_port}", protocol="http", reqTimeout=10)
    c = tc.LiveClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou", ClientProfile(httpProfile=http))

    def call(action, params):
        req = getattr(models, f"{action}Request")()
        req.from_json_string(json.dumps(params))
        return getattr(c, action)(req)

    call("AddLiveDomain", {"DomainName": PUSH, "DomainType": 0, "PlayType": 1})
    call("ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 1, "MasterAuthKey": "rtckey"})
    tx_time = f"{int(time.time()) + 3600:X}"
    good = hashlib.md5(f"rtckey{'signed'}{tx_time}".encode()).hexdigest()
    url = auth_server.http("/whip")
    sdp = {"Content-Type": "application/sdp"}

    bad = f"webrtc://{PUSH}/live/signed?txSecret={'0' * 32}&txTime={tx_time}"
    r = requests.post(url, data="v=0", headers={**sdp, "Authorization": f"Bearer {bad}"}, timeout=5)
    assert r.status_code == 403, (r.status_code, r.text)
    r = requests.post(auth_server.http("/whip/live/signed"), data="v=0", headers=sdp, timeout=5)
    assert r.status_code == 403, (r.status_code, r.text)
    # The OBS form: the full push URL as the Bearer token; a good signature gets past the door (and then a real
    # offer publishes).
    token = f"webrtc://{PUSH}/live/signed?txSecret={good}&txTime={tx_time}"
    pub = whip_ffmpeg(url, 6, token=token, name="whip-signed")
    auth_server.wait_media("signed", timeout=20)
    pub.kill()
    # Or just the query as the token, on the path form.
    r = requests.post(auth_server.http("/whip/live/signed2"), data="v=0",
                      headers={**sdp, "Authorization": f"Bearer txSecret={good}&txTime={tx_time}"}, timeout=5)
    assert r.status_code == 403, "the signature covers the stream name"


def test_ice_tcp_candidate_answers_connectivity_checks(server):
    """ICE over TCP: the answer carries a passive TCP candidate; a STUN binding request framed per RFC 4571 on it
    gets a success response (aiortc has no ICE-TCP, so the check is made by hand with aioice's STUN codec)."""
    import asyncio
    import random
    import socket

    from aioice import stun
    from aiortc import RTCPeerConnection

    pub = publish(server.rtmp("icetcp"), 15, tune="zerolatency")
    server.wait_media("icetcp")

    async def offer():
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    sdp = asyncio.run(offer())
    r = requests.post(server.http("/whep/live/icetcp"), data=sdp, headers={"Content-Type": "application/sdp"},
                      timeout=5)
    assert r.status_code == 201, r.text
    attr = lambda text, name: next(line.split(":", 1)[1].strip() for line in text.splitlines()  # noqa: E731
                                   if line.startswith(f"a={name}:"))
    tcp = [line for line in r.text.splitlines() if line.startswith("a=candidate") and " tcp " in line.lower()]
    assert tcp and "tcptype passive" in tcp[0], r.text
    host, port = tcp[0].split()[4], int(tcp[0].split()[5])
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{attr(r.text, 'ice-ufrag')}:{attr(sdp, 'ice-ufrag')}"
    msg.attributes["PRIORITY"] = 1_000_000
    msg.attributes["ICE-CONTROLLING"] = random.getrandbits(64)
    msg.attributes["USE-CANDIDATE"] = None
    msg.add_message_integrity(attr(r.text, "ice-pwd").encode())
    msg.add_fingerprint()
    data = bytes(msg)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(len(data).to_bytes(2, "big") + data)
        n = int.from_bytes(s.recv(2, socket.MSG_WAITALL), "big")
        reply = stun.parse_message(s.recv(n, socket.MSG_WAITALL))
        local = s.getsockname()
    assert reply.message_class == stun.Class.RESPONSE, reply
    assert reply.transaction_id == msg.transaction_id
    assert tuple(reply.attributes["XOR-MAPPED-ADDRESS"]) == local
    requests.delete(server.http(r.headers["Location"]), timeout=5)
    pub.kill()
