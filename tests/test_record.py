"""Recording and screenshots end to end (issue 6): record templates and rules through the official SDK, files in
every format checked with ffprobe/ffmpeg, interval splitting, HLS resumption, record tasks, S3 storage (moto and
SeaweedFS) including storage that is down while recording, kill -9 recovery, SIGTERM finalization, screenshots, and
the callbacks 100/200/332/341 with their signatures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from conftest import Proc, decode_errors, ffmpeg9, free_port, has_encoder, publish, run, tool, wait_until
from test_api import PUSH, SECRET_ID, SECRET_KEY, call, client, error_code
from test_callbacks import KEY, Receiver, check_sign

FPS = 30
GOP = 30  # one keyframe per second: "within one GOP" is within 1 s
ENV = {
    "FERROCAST_API_SECRET_ID": SECRET_ID,
    "FERROCAST_API_SECRET_KEY": SECRET_KEY,
    "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500",
    "FERROCAST_CALLBACKS_RETRY_INTERVAL_MS": "300",
    "FERROCAST_CALLBACKS_APPID": "12345678",
    "FERROCAST_RECORD_HLS_SEGMENT_MS": "2000",
    "FERROCAST_RECORD_TASK_POLL_MS": "300",
    "FERROCAST_RECORD_TIME_ZONE": "UTC",
    "FERROCAST_STORAGE_MAX_BACKOFF_S": "2",
}


def record_param(interval: int | None = None, **extra) -> dict:
    p = {"Enable": 1, **extra}
    if interval is not None:
        p["RecordInterval"] = interval
    return p


def setup(server, rec: Receiver, template: dict, stream: str | None = None, app: str = "live") -> int:
    """A callback template (events 100/200/332/341 to `rec`) for the domain, a record template and a rule."""
    c = client(server)
    cb = call(c, "CreateLiveCallbackTemplate", {
        "TemplateName": f"cb{free_port()}", "RecordNotifyUrl": rec.url("/record"),
        "RecordStatusNotifyUrl": rec.url("/status"), "SnapshotNotifyUrl": rec.url("/snapshot"),
        "RecordExceptionNotifyUrl": rec.url("/exception"), "CallbackKey": KEY}).TemplateId
    call(c, "CreateLiveCallbackRule", {"DomainName": PUSH, "AppName": app, "TemplateId": cb})
    tid = call(c, "CreateLiveRecordTemplate", {"TemplateName": f"rec{free_port()}", **template}).TemplateId
    rule = {"DomainName": PUSH, "AppName": app, "TemplateId": tid}
    if stream:
        rule["StreamName"] = stream
    call(c, "CreateLiveRecordRule", rule)
    return tid


def local_path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(urllib.parse.unquote(url[len("file://"):]))


def ffprobe(path: Path) -> dict:
    r = run([tool("ffprobe"), "-v", "error", "-show_format", "-show_streams", "-of", "json", path], limit=60)
    return json.loads(r.stdout or "{}")


def duration(path: Path) -> float:
    return float(ffprobe(path).get("format", {}).get("duration") or 0)


def codecs(path: Path) -> set[str]:
    return {s["codec_name"] for s in ffprobe(path).get("streams", [])}


def top_boxes(path: Path) -> list[str]:
    out, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        out.append(kind.decode("latin1"))
        if size < 8:
            break
        at += size
    return out


def check_file(path: Path, want_s: float, *, audio_only: bool = False, tolerance: float = 1.0) -> None:
    """Plays from its start, has the expected tracks, lasts `want_s` ± one GOP, decodes without errors."""
    assert path.exists() and path.stat().st_size > 0, path
    names = codecs(path)
    assert names == ({"aac"} if audio_only else {"h264", "aac"}), f"{path.name}: {names}"
    d = duration(path)
    assert abs(d - want_s) <= tolerance, f"{path.name} lasts {d:.2f} s, want {want_s} ± {tolerance}"
    errors = decode_errors(path)
    assert not errors, f"{path.name}:\n" + "\n".join(errors[:10])


def fast_push(url: str, seconds: int, name: str = "fast-pub") -> Proc:
    """Pushes `seconds` of media as fast as ffmpeg can encode it (no -re): long recordings in little time."""
    argv = [tool("ffmpeg"), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}", "-f", "lavfi", "-i", "sine=sample_rate=44100",
            "-t", str(seconds), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
            "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", "-c:a", "aac", "-f", "flv", url]
    return Proc(name, argv, 120)


def wait_events(rec: Receiver, path: str, event_type: int, n: int, timeout: float, what: str) -> list[dict]:
    wait_until(lambda: len(rec.events(path, event_type)) >= n, timeout, what=what)
    return rec.events(path, event_type)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_rule_records_every_format_with_callbacks(server_factory, receiver):
    server = server_factory(ENV)
    setup(server, receiver, {"FlvParam": record_param(), "HlsParam": record_param(), "Mp4Param": record_param(),
                             "AacParam": record_param()}, stream="allfmt")
    pub = publish(server.rtmp("allfmt"), 6, gop=GOP, name="pub-allfmt")
    server.wait_live("allfmt")
    assert pub.wait(40) == 0, pub.tail()
    files = wait_events(receiver, "/record", 100, 4, 30, "event 100 for flv, hls, mp4 and aac")
    by_format = {e["file_format"]: e for e in files}
    assert set(by_format) == {"flv", "hls", "mp4", "aac"}, files
    for fmt, e in by_format.items():
        check_sign(e)
        assert (e["app"], e["appname"], e["stream_id"], e["channel_id"]) == (PUSH, "live", "allfmt", "allfmt")
        assert e["appid"] == 12345678 and e["task_id"] == "" and e["record_temp_id"]
        assert 5 <= e["duration"] <= 7, e
        assert e["end_time"] >= e["start_time"] and 0 <= e["start_time_usec"] < 1_000_000
        path = local_path(e["video_url"])
        assert path.stat().st_size == e["file_size"] or fmt == "hls", (fmt, path.stat().st_size, e["file_size"])
        # The documented folder: origin/{Domain}/{AppName}/{StreamID}/{RecordId}/{Y}-{M}-{D}-{h}-{m}-{s}.
        parts = path.parts
        assert parts[-7:-2] == ("origin", PUSH, "live", "allfmt", e["record_temp_id"]), parts
        assert path.name == f"allfmt.{'m3u8' if fmt == 'hls' else fmt}"
        assert json.loads(e["callback_ext"])["resolution"] == "640x360"
        check_file(path, 6.0, audio_only=fmt == "aac")
    mp4 = local_path(by_format["mp4"]["video_url"])
    boxes = top_boxes(mp4)
    assert boxes.index("moov") < boxes.index("mdat"), f"MP4 not seekable from the start: {boxes}"
    playlist = local_path(by_format["hls"]["video_url"]).read_text()
    assert "#EXT-X-ENDLIST" in playlist and playlist.count("#EXTINF") >= 3, playlist
    # Event 332: started and ended, per format.
    statuses = wait_events(receiver, "/status", 332, 8, 10, "event 332 start and end per format")
    for fmt_code in (1, 2, 3, 4):
        seen = [s["record_event"] for s in statuses if json.loads(s["record_detail"])["file_format"] == fmt_code]
        assert seen[:1] == ["record_start_succeeded"] and "record_ended" in seen, statuses
    assert all(s["domain"] == PUSH and s["stream_id"] == "allfmt" for s in statuses)
    m = server.metrics()
    assert m.get("ferrocast_record_files_stored_total") >= 4 and m.get("ferrocast_record_jobs") == 0
    # Nothing left behind in the spool.
    spool = server.data_dir / "spool" / "rec"
    leftovers = [p for p in spool.rglob("*") if p.is_file() and p.name != "session.json"]
    assert not leftovers, leftovers


def test_interval_splitting_and_short_pushes(server_factory, receiver):
    server = server_factory({**ENV, "FERROCAST_RECORD_MIN_DURATION_MS": "3000"})
    setup(server, receiver, {"FlvParam": record_param(60), "Mp4Param": record_param(60),
                             "HlsParam": record_param(60)}, stream="split")
    # 130 s of media: 60 + 60 + 10 s files of each format (HLS: three playlists).
    pub = fast_push(server.rtmp("split"), 130)
    assert pub.wait(100) == 0, pub.tail()
    files = wait_events(receiver, "/record", 100, 9, 30, "three files of each format")
    for fmt in ("flv", "mp4", "hls"):
        mine = [e for e in files if e["file_format"] == fmt]
        assert len(mine) == 3, [(e["file_format"], e["duration"]) for e in files]
        durations = sorted(duration(local_path(e["video_url"])) for e in mine)
        for got, want in zip(durations, [10, 60, 60]):
            assert abs(got - want) <= 1.0, (fmt, durations)
        for e in mine:
            assert not decode_errors(local_path(e["video_url"]))
    # A push shorter than the minimum gives no file, and event 332 says why.
    setup(server, receiver, {"FlvParam": record_param()}, stream="tiny")
    pub = publish(server.rtmp("tiny"), 1.5, gop=GOP, name="pub-tiny")
    assert pub.wait(30) == 0
    def tiny_errors():
        return [e for e in receiver.events("/status", 332)
                if e["stream_id"] == "tiny" and e["record_event"] == "record_error"]

    wait_until(lambda: tiny_errors(), 15, what="the no-file status of the short push")
    assert "no file" in tiny_errors()[0]["message"], tiny_errors()
    assert not [e for e in receiver.events("/record", 100) if e["stream_id"] == "tiny"]


def test_hls_resumption_gives_one_recording_with_a_discontinuity(server_factory, receiver):
    server = server_factory(ENV)
    setup(server, receiver, {"HlsParam": record_param(), "HlsSpecialParam": {"FlowContinueDuration": 6}},
          stream="resume")
    for i in range(2):
        pub = publish(server.rtmp("resume"), 4, gop=GOP, name=f"pub-resume-{i}")
        server.wait_live("resume")
        assert pub.wait(30) == 0
        # Past the hub's grace period: the stream really ends between the two pushes.
        wait_until(lambda: not server.is_live("resume"), 10, what="stream ended")
        time.sleep(1.0)
    time.sleep(3)
    assert not receiver.events("/record", 100), "event 100 must wait for the resumption timeout"
    files = wait_events(receiver, "/record", 100, 1, 15, "the HLS file after the timeout")
    time.sleep(1)
    assert len(receiver.events("/record", 100)) == 1
    e = files[0]
    assert e["file_format"] == "hls" and 7 <= e["duration"] <= 9, e
    path = local_path(e["video_url"])
    text = path.read_text()
    assert text.count("#EXT-X-DISCONTINUITY") == 1 and text.endswith("#EXT-X-ENDLIST\n"), text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert (path.parent / line).exists(), line
    assert abs(duration(path) - 8) <= 1.5 and not decode_errors(path)
    events = [s["record_event"] for s in receiver.events("/status", 332)]
    assert "record_paused" in events and "record_resumed" in events, events


@pytest.mark.parametrize("codec,audio", [("hevc", "aac"), ("av1", "opus")])
def test_codecs_follow_the_support_table(server_factory, receiver, tmp_path, codec, audio):
    """Spec §6: H.265 in FLV (Enhanced RTMP), HLS and MP4; AV1 in FLV and MP4 but not HLS; Opus in FLV, HLS and MP4
    but not in AAC files. A format that cannot carry the stream is refused with events 341 and 332 (record_error),
    and the other formats are recorded."""
    ff9 = ffmpeg9()
    if codec == "av1" and not (has_encoder(ff9, "libsvtav1") or has_encoder(ff9, "libaom-av1")):
        pytest.skip("no AV1 encoder in ffmpeg 9")
    server = server_factory(ENV)
    stream = f"c{codec}"
    setup(server, receiver, {"FlvParam": record_param(), "HlsParam": record_param(), "Mp4Param": record_param(),
                             "AacParam": record_param()}, stream=stream)
    pub = publish(server.rtmp(stream), 5, codec=codec, audio=audio, size="320x240", rate=25, gop=25, ffmpeg=ff9,
                  name=f"pub-{stream}")
    server.wait_live(stream)
    assert pub.wait(60) == 0, pub.tail()
    carried = {"hevc": {"flv", "hls", "mp4", "aac"}, "av1": {"flv", "mp4"}}[codec]
    files = wait_events(receiver, "/record", 100, len(carried), 30, f"files of {sorted(carried)}")
    time.sleep(1)
    files = receiver.events("/record", 100)
    assert {e["file_format"] for e in files} == carried, [e["file_format"] for e in files]
    for e in files:
        path = local_path(e["video_url"])
        # Debian's ffprobe cannot read Enhanced RTMP FLV: ffmpeg 9 copies every file into Matroska first.
        mkv = tmp_path / f"{e['file_format']}.mkv"
        r = run([ff9, "-v", "error", "-y", "-i", path, "-c", "copy", mkv], limit=60)
        assert r.rc == 0, r.stderr
        want = {audio} if e["file_format"] == "aac" else {codec, audio}
        assert codecs(mkv) == want, (e["file_format"], codecs(mkv))
        assert abs(duration(mkv) - 5) <= 1.0, (e["file_format"], duration(mkv))
    refused = {"flv", "hls", "mp4", "aac"} - carried
    if refused:
        exceptions = wait_events(receiver, "/exception", 341, len(refused), 10, "exceptions for the refused formats")
        assert {x["file_format"] for x in exceptions} >= {"ts" if f == "hls" else f for f in refused}, exceptions
        assert all(x["exception"]["type"] == -104 and x["exception_level"] == "error" for x in exceptions)
        errors = [s for s in receiver.events("/status", 332) if s["record_event"] == "record_error"]
        assert len(errors) >= len(refused), errors


def test_record_task_real_time_and_window(server_factory, receiver):
    server = server_factory(ENV)
    c = client(server)
    setup(server, receiver, {"FlvParam": record_param()}, stream="unused-rule")
    tid = call(c, "CreateLiveRecordTemplate", {"TemplateName": "task_t", "Mp4Param": record_param()}).TemplateId
    pub = publish(server.rtmp("tasked"), 10, gop=GOP, name="pub-task")
    server.wait_live("tasked")
    time.sleep(1)
    task = call(c, "CreateRecordTask", {"DomainName": PUSH, "AppName": "live", "StreamName": "tasked",
                                        "EndTime": int(time.time()) + 3600, "TemplateId": tid}).TaskId
    time.sleep(4)
    call(c, "StopRecordTask", {"TaskId": task})
    files = wait_events(receiver, "/record", 100, 1, 20, "the task's file")
    e = files[0]
    assert e["task_id"] == task and e["file_format"] == "mp4" and e["stream_param"] == "", e
    d = duration(local_path(e["video_url"]))
    assert 2.0 <= d <= 6.0, d  # stopped after ~4 s, well before the push ended
    assert not decode_errors(local_path(e["video_url"]))
    assert pub.wait(30) == 0
    assert len(receiver.events("/record", 100)) == 1


def test_screenshots_at_the_interval_and_size(server_factory, receiver):
    server = server_factory(ENV)
    c = client(server)
    setup(server, receiver, {}, stream="nothing")  # callbacks only; the record template records nothing
    tid = call(c, "CreateLiveSnapshotTemplate", {"TemplateName": "snap", "CosAppId": 1, "CosBucket": "local",
                                                 "CosRegion": "here", "SnapshotInterval": 2, "Width": 320}).TemplateId
    call(c, "CreateLiveSnapshotRule", {"DomainName": PUSH, "AppName": "live", "StreamName": "snapped",
                                       "TemplateId": tid})
    pub = publish(server.rtmp("snapped"), 8, gop=GOP, name="pub-snap")
    server.wait_live("snapped")
    assert pub.wait(30) == 0
    pics = wait_events(receiver, "/snapshot", 200, 3, 15, "three screenshots")
    times = sorted(p["create_time"] for p in pics)
    assert all(b - a >= 1 for a, b in zip(times, times[1:])), times
    for p in pics:
        check_sign(p)
        assert (p["app"], p["appname"], p["stream_id"], p["width"], p["height"]) == (PUSH, "live", "snapped", 320, 180)
        assert p["pic_url"].endswith("-320x180.jpg") and "snapped-screenshot-" in p["pic_url"]
        path = local_path(p["pic_full_url"])
        data = path.read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9" and len(data) == p["file_size"]
        s = ffprobe(path)["streams"][0]
        assert (s["width"], s["height"]) == (320, 180)
    assert not receiver.events("/record", 100), "a template with no format records nothing"


def test_kill9_mid_recording_is_recovered_and_reported(server_factory, receiver):
    server = server_factory(ENV)
    setup(server, receiver, {"FlvParam": record_param(), "Mp4Param": record_param(), "HlsParam": record_param()},
          stream="crash")
    pub = publish(server.rtmp("crash"), 30, gop=GOP, name="pub-crash")
    server.wait_live("crash")
    time.sleep(7)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    pub.kill()
    assert not receiver.events("/record", 100)
    server.start()
    files = wait_events(receiver, "/record", 100, 3, 30, "recovered flv, mp4 and hls")
    for e in files:
        path = local_path(e["video_url"])
        d = duration(path)
        assert 4.0 <= d <= 9.0, (e["file_format"], d)
        errors = decode_errors(path)
        assert not errors, (e["file_format"], errors[:5])
    mp4 = local_path(next(e for e in files if e["file_format"] == "mp4")["video_url"])
    assert "moov" in top_boxes(mp4)


def test_sigterm_finalizes_recordings(server_factory, receiver):
    server = server_factory(ENV)
    setup(server, receiver, {"Mp4Param": record_param(), "HlsParam": record_param()}, stream="term")
    pub = publish(server.rtmp("term"), 30, gop=GOP, name="pub-term")
    server.wait_live("term")
    time.sleep(5)
    server.terminate(signal.SIGTERM, timeout=15)
    pub.kill()
    mp4s = list((server.data_dir / "records").rglob("term.mp4"))
    playlists = list((server.data_dir / "records").rglob("term.m3u8"))
    assert len(mp4s) == 1 and len(playlists) == 1, (mp4s, playlists)
    assert 3.0 <= duration(mp4s[0]) <= 7.0 and not decode_errors(mp4s[0])
    assert "#EXT-X-ENDLIST" in playlists[0].read_text()
    assert not list((server.data_dir / "spool").rglob("*.part"))


# ---------------------------------------------------------------------------------------------------------------
# S3-compatible storage: moto (in memory) and SeaweedFS (`weed mini`, a real store)
# ---------------------------------------------------------------------------------------------------------------

BUCKET = "recbucket"
ACCESS, SECRET = "AKIAFERROCASTTEST", "s3cr3t-do-not-log-me"


class S3Store:
    """An S3-compatible store that is not there until `start` (which also makes the bucket): moto (in memory) or
    SeaweedFS `weed mini` (a real store on disk, with signature checking)."""

    def __init__(self, kind: str, workdir: Path):
        name = {"moto": "moto_server", "weed": "weed"}[kind]
        exe = shutil.which(name) or str(Path(os.sys.executable).parent / name)
        if not Path(exe).exists():
            pytest.skip(f"{name} is not installed (tests/requirements.txt installs it)")
        self.kind, self.exe, self.port, self.proc, self.workdir = kind, exe, free_port(), None, workdir

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Store":
        if self.kind == "moto":
            self.proc = Proc("moto", [self.exe, "-H", "127.0.0.1", "-p", str(self.port)], 600)
        else:
            ids = self.workdir / "ids.json"
            ids.write_text(json.dumps({"identities": [{"name": "ferrocast", "credentials": [
                {"accessKey": ACCESS, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List"]}]}))
            (self.workdir / "weed").mkdir(exist_ok=True)
            # Every port free and explicit: weed's defaults (9333, 8888, ...) may be taken, and it derives gRPC
            # ports by adding 10000, which fails above 55535.
            ports = [f"-{flag}={free_port()}" for flag in (
                "s3.port.grpc", "master.port", "master.port.grpc", "filer.port", "filer.port.grpc", "volume.port",
                "volume.port.grpc", "admin.port", "admin.port.grpc")]
            self.proc = Proc("weed", [self.exe, "mini", f"-dir={self.workdir / 'weed'}", "-ip=127.0.0.1",
                                      "-ip.bind=127.0.0.1", f"-s3.port={self.port}", f"-s3.config={ids}",
                                      f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false", *ports], 600)
        wait_until(lambda: _up(self.endpoint), 60, what=f"{self.kind} up")
        wait_until(lambda: _try(self._bucket), 40, what=f"bucket in {self.kind}")
        if self.kind == "weed":
            # SeaweedFS grows its first volumes on the first write, which can take tens of seconds; writes in the
            # meantime wait (ferrocast's retry), so the test waits for a write of its own to go through.
            wait_until(lambda: _try(lambda: self.s3().put_object(Bucket=BUCKET, Key="warmup", Body=b"x")), 90,
                       interval=1, what="a first write to SeaweedFS")
        return self

    def _bucket(self) -> None:
        try:
            self.s3().create_bucket(Bucket=BUCKET)
        except Exception as e:  # noqa: BLE001 - a bucket kept on disk from the previous start is fine
            if "BucketAlready" not in str(e):
                raise

    def s3(self):
        return s3_client(self.endpoint)

    def stop(self) -> None:
        if self.proc:
            # weed runs several servers in its process group: kill them all.
            os.killpg(self.proc.popen.pid, signal.SIGKILL)
            self.proc.popen.wait(10)
            self.proc = None

    def get(self, key: str) -> bytes:
        return self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def s3_client(endpoint: str):
    """boto3 (it comes with moto): an independent S3 client to create buckets and read back what ferrocast stored."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                        region_name="us-east-1")


def _up(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


def s3_config(tmp_path: Path, endpoint: str) -> Path:
    cfg = tmp_path / "s3.toml"
    cfg.write_text(f"""
[[storage.targets]]
name = "s3"
kind = "s3"
endpoint = "{endpoint}"
region = "us-east-1"
bucket = "{BUCKET}"
access_key_id = "{ACCESS}"
secret_access_key = "{SECRET}"
path_style = true
""")
    return cfg


@pytest.mark.parametrize("kind", ["moto", "weed"])
def test_s3_upload_survives_storage_down_then_up(server_factory, receiver, tmp_path, kind):
    moto = S3Store(kind, tmp_path)
    server = server_factory(ENV, args=["--config", str(s3_config(tmp_path, moto.endpoint))])
    setup(server, receiver, {"FlvParam": record_param(CosBucketName=BUCKET),
                             "HlsParam": record_param(CosBucketName=BUCKET),
                             "Mp4Param": record_param(CosBucketName=BUCKET)}, stream="s3rec")
    # Storage is down for the whole push: the files wait in the spool and uploads retry.
    pub = publish(server.rtmp("s3rec"), 5, gop=GOP, name="pub-s3")
    server.wait_live("s3rec")
    assert pub.wait(30) == 0
    wait_until(lambda: "upload failed" in server.text(), 15, what="failing upload attempts")
    # After 3 failed attempts of a file, event 341 says so (the live stream was never affected).
    failures = wait_events(receiver, "/exception", 341, 1, 20, "event 341 for the failing uploads")
    assert failures[0]["exception"]["type"] == -104 and "upload" in failures[0]["exception"]["desc"], failures
    assert SECRET not in json.dumps(failures)
    assert not receiver.events("/record", 100)
    moto.start()
    try:
        files = wait_events(receiver, "/record", 100, 3, 90, "files uploaded once storage is up")
        for e in files:
            url = e["video_url"]
            assert url.startswith(f"{moto.endpoint}/{BUCKET}/origin/{PUSH}/live/s3rec/"), url
            key = urllib.parse.unquote(url[len(f"{moto.endpoint}/{BUCKET}/"):])
            data = moto.get(key)
            if e["file_format"] != "hls":
                assert len(data) == e["file_size"]
            local = tmp_path / f"dl.{e['file_format']}"
            local.write_bytes(data)
            if e["file_format"] == "hls":
                for line in data.decode().splitlines():
                    if line and not line.startswith("#"):
                        (tmp_path / line).write_bytes(moto.get(key.rsplit("/", 1)[0] + "/" + line))
                local = tmp_path / "dl.m3u8"
                local.write_bytes(data)
            check_file(local, 5.0)
        # Upload while recording (FlvSpecialParam.UploadInRecording) with the store up: the FLV is streamed to S3
        # as it is written.
        c = client(server)
        tid = call(c, "CreateLiveRecordTemplate", {
            "TemplateName": "growing", "FlvParam": record_param(CosBucketName=BUCKET),
            "FlvSpecialParam": {"UploadInRecording": True}}).TemplateId
        call(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": "live", "StreamName": "s3grow",
                                         "TemplateId": tid})
        pub = publish(server.rtmp("s3grow"), 5, gop=GOP, name="pub-s3grow")
        server.wait_live("s3grow")
        wait_until(lambda: "uploaded while it is recorded" in server.text(), 10, what="upload while recording")
        assert pub.wait(30) == 0
        grown = wait_until(lambda: [e for e in receiver.events("/record", 100) if e["stream_id"] == "s3grow"], 20,
                           what="the FLV uploaded while recorded")[0]
        key = urllib.parse.unquote(grown["video_url"][len(f"{moto.endpoint}/{BUCKET}/"):])
        local = tmp_path / "grown.flv"
        local.write_bytes(moto.get(key))
        assert local.stat().st_size == grown["file_size"]
        check_file(local, 5.0)
        # Credentials never reach the log or the API.
        assert SECRET not in server.text()
    finally:
        moto.stop()


def _try(f) -> bool:
    try:
        f()
        return True
    except Exception:  # noqa: BLE001 - SeaweedFS answers 5xx until its filer is up
        return False
