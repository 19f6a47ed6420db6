"""Black-box test harness for ferrocast: the real binary, driven by real clients (ffmpeg, ffprobe, raw sockets).

Everything a test starts runs under a hard time limit (`timeout -s KILL`) and is killed by PID when the test or
module ends. On a failing test, the tail of every server log and client log of that test (and of its module's
fixtures) is attached to the report.

Helpers are plain functions of this module; test files import them with `from conftest import ...`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
INSTALL_HINT = "run scripts/test.sh, which installs it (Debian: apt-get install ffmpeg openssl; PyPI: pip install -r tests/requirements.txt)"
FFMPEG9_NAME = "ffmpeg-linux-x86_64-v9.0.2"

# --------------------------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """Absolute path of a command-line tool from PATH; fails the test with the install command if missing."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def ferrocast_bin() -> str:
    path = Path(os.environ.get("FERROCAST_BIN") or REPO / "target" / "debug" / "ferrocast")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"the ferrocast binary is missing at {path}: build it with `cargo build --bin ferrocast` "
            "(scripts/test.sh builds it), or point FERROCAST_BIN at a build",
            pytrace=False,
        )
    return str(path)


def ffmpeg9() -> str:
    """The ffmpeg 9.0.2 binary shipped in the imageio-ffmpeg==0.8.1 wheel (Enhanced RTMP: HEVC, AV1, Opus)."""
    explicit = os.environ.get("FERROCAST_FFMPEG9")
    if explicit:
        return explicit
    try:
        import imageio_ffmpeg  # noqa: PLC0415
    except ImportError:
        pytest.fail(f"imageio-ffmpeg (ffmpeg 9.0.2) is not installed: {INSTALL_HINT}", pytrace=False)
    path = Path(imageio_ffmpeg.__file__).parent / "binaries" / FFMPEG9_NAME
    if not path.is_file():
        pytest.fail(f"{path} is missing: install imageio-ffmpeg==0.8.1 ({INSTALL_HINT})", pytrace=False)
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


_ENCODERS: dict[str, str] = {}


def ffmpeg_encoders(ffmpeg: str) -> str:
    if ffmpeg not in _ENCODERS:
        _ENCODERS[ffmpeg] = run([ffmpeg, "-hide_banner", "-encoders"], limit=30).stdout
    return _ENCODERS[ffmpeg]


def has_encoder(ffmpeg: str, name: str) -> bool:
    return re.search(rf"^\s*\S+\s+{re.escape(name)}\s", ffmpeg_encoders(ffmpeg), re.M) is not None


# --------------------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------------------

_ALL_PROCS: list["Proc"] = []
_ALL_SERVERS: list["Server"] = []
_LOG_DIR: Path | None = None
_SEQ = [0]


class _Marks:
    module_procs = 0
    module_servers = 0
    test_procs = 0


def log_dir() -> Path:
    global _LOG_DIR
    if _LOG_DIR is None:
        import tempfile  # noqa: PLC0415

        _LOG_DIR = Path(tempfile.mkdtemp(prefix="ferrocast-tests-"))
    return _LOG_DIR


def _next(name: str) -> str:
    _SEQ[0] += 1
    return f"{_SEQ[0]:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


def run(argv: list[str], limit: float = 60, check: bool = False, **kw) -> Result:
    """Runs a command to completion under a hard time limit (SIGKILL)."""
    cmd = ["timeout", "-s", "KILL", str(int(limit))] + [str(a) for a in argv]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", **kw)
    if p.returncode == 137 or p.returncode == -9:
        raise AssertionError(f"command killed after its {limit}s limit: {' '.join(cmd[4:])}\n{p.stderr[-3000:]}")
    if check and p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(cmd[4:])}\n{p.stderr[-3000:]}")
    return Result(p.returncode, p.stdout, p.stderr)


class Proc:
    """A client process (ffmpeg etc.) in its own process group, under `timeout -s KILL limit`, output to a log."""

    def __init__(self, name: str, argv: list[str], limit: float, stdout_path: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log_dir() / f"{_next(name)}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = open(self.log, "wb")
        self._logf.write((" ".join(self.argv) + "\n\n").encode())
        self._logf.flush()
        out = open(stdout_path, "wb") if stdout_path else self._logf
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            ["timeout", "-s", "KILL", str(int(limit))] + self.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=self._logf,
            start_new_session=True,
        )
        if stdout_path:
            out.close()
        self.ended: float | None = None
        _ALL_PROCS.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.poll() is None

    def poll(self) -> int | None:
        rc = self.popen.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""
        try:
            self.popen.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def signal(self, sig: int) -> None:
        """Signals the whole group (the `timeout` wrapper and the client)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.poll()

    def text(self) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} rc={self.popen.poll()} log={self.log}>"


def _kill_everything() -> None:
    for p in _ALL_PROCS:
        p.signal(signal.SIGKILL)
    for s in _ALL_SERVERS:
        s.kill()


atexit.register(_kill_everything)


def wait_until(cond, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls `cond()` until it returns a truthy value; returns it, or raises AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polled conditions may fail transiently (connection refused)
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and was not handed out before in this run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


_PORTS_GIVEN: set[int] = set()


# --------------------------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------------------------


class Server:
    """One ferrocast process on free ports with its own data dir, configured by FERROCAST_* env overrides."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, args: list[str] | None = None,
                 rtmps: tuple[Path, Path] | None = None, ports_from_env: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.rtmps_port = free_port()
        self.srt_port = free_port()  # UDP; a TCP port free on loopback is as good a guess as any
        self.args = list(args or [])
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FERROCAST_")}
        if ports_from_env:
            self.env.update({
                "FERROCAST_RTMP_LISTEN": f"127.0.0.1:{self.rtmp_port}",
                "FERROCAST_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "FERROCAST_SRT_LISTEN": f"127.0.0.1:{self.srt_port}",
                "FERROCAST_STORAGE_DATA_DIR": str(self.data_dir),
                # WebRTC media on a free UDP port (the SDP answer carries it).
                "FERROCAST_WEBRTC_UDP_LISTEN": "127.0.0.1:0",
                "FERROCAST_WEBRTC_TCP_LISTEN": "127.0.0.1:0",
            })
            if rtmps:
                self.env.update({
                    "FERROCAST_RTMPS_LISTEN": f"127.0.0.1:{self.rtmps_port}",
                    "FERROCAST_RTMPS_CERT_FILE": str(rtmps[0]),
                    "FERROCAST_RTMPS_KEY_FILE": str(rtmps[1]),
                })
        self.env.setdefault("FERROCAST_LOG_LEVEL", "info")
        self.env.update(env or {})
        self.log = log_dir() / f"{_next('ferrocast')}.log"
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        _ALL_SERVERS.append(self)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, wait: bool = True) -> "Server":
        binary = ferrocast_bin()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            f.write(f"$ {binary} {' '.join(self.args)}\n".encode())
            f.write(("".join(f"  {k}={v}\n" for k, v in sorted(self.env.items()) if k.startswith("FERROCAST_")))
                    .encode())
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([binary, *self.args], env=self.env, cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"ferrocast exited with code {self.proc.returncode} before /healthz answered 200; "
                            f"its log:\n{self.tail(60)}", pytrace=False)
            try:
                if requests.get(self.http("/healthz"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"ferrocast /healthz did not answer 200 within {timeout}s; its log:\n{self.tail(60)}",
                            pytrace=False)
            time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int | None, float]:
        """Sends `sig` and waits up to `timeout` s. Returns (exit code or None if it did not exit, seconds taken).
        A server that did not exit is then killed."""
        if not self.running():
            return (self.proc.returncode if self.proc else None, 0.0)
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        if rc is None:
            self.kill()
        self.exit_code = rc
        return rc, took

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        self.terminate(signal.SIGTERM, 5.0)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 100) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    # -- addresses -------------------------------------------------------------------------------------------
    def rtmp(self, stream: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def rtmps(self, stream: str, app: str = "live") -> str:
        return f"rtmps://127.0.0.1:{self.rtmps_port}/{app}/{stream}"

    def srt(self, streamid: str, **options) -> str:
        """srt://127.0.0.1:PORT?streamid=... (percent-encoded) plus libsrt URL options."""
        from urllib.parse import quote  # noqa: PLC0415
        query = "&".join([f"streamid={quote(streamid, safe='')}"] + [f"{k}={v}" for k, v in options.items()])
        return f"srt://127.0.0.1:{self.srt_port}?{query}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def flv(self, stream: str, app: str = "live") -> str:
        return self.http(f"/{app}/{stream}.flv")

    # -- observation -----------------------------------------------------------------------------------------
    def metrics_text(self) -> str:
        r = requests.get(self.http("/metrics"), timeout=5)
        assert r.status_code == 200, f"/metrics answered {r.status_code}"
        return r.text

    def metrics(self) -> "Metrics":
        return Metrics(self.metrics_text())

    def is_live(self, stream: str, app: str = "live") -> bool:
        """Whether GET {app}/{stream}.flv answers 200 (the probe viewer is closed at once)."""
        try:
            with requests.get(self.flv(stream, app), stream=True, timeout=(2, 2)) as r:
                return r.status_code == 200
        except requests.RequestException:
            return False

    def wait_live(self, stream: str, app: str = "live", timeout: float = 15) -> float:
        """Waits until the stream plays over HTTP-FLV; returns time.monotonic() at that moment."""
        wait_until(lambda: self.is_live(stream, app), timeout, 0.05, f"stream {app}/{stream} to go live")
        return time.monotonic()

    def wait_media(self, stream: str, app: str = "live", timeout: float = 20) -> float:
        """Waits until the stream carries video frames (an encoder with look-ahead sends its first frame ~1.5 s
        after publishing starts); returns time.monotonic() when a probe viewer got one. Right after the publisher
        starts, that moment is about media time 0 of a -re push."""
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with requests.get(self.flv(stream, app), stream=True, timeout=(2, 3)) as r:
                    if r.status_code == 200:
                        flv = FlvReader(r.raw.read)
                        while time.monotonic() < deadline:
                            t = flv.tag()
                            if t.type == 9 and not t.is_video_config and t.data and (t.data[0] >> 4) & 7 in (1, 2, 3):
                                return time.monotonic()
            except Exception as e:  # noqa: BLE001 - not live yet, read timeout, stream ended: poll again
                last_exc = e
            time.sleep(0.05)
        raise AssertionError(f"no video frames on {app}/{stream} within {timeout}s (last error: {last_exc!r})")


class Metrics:
    """Parsed Prometheus text exposition."""

    LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, text: str):
        self.text = text
        self.series: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            m = self.LINE.match(line)
            if not m:
                continue
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            self.series.append((m.group(1), dict(self.LABEL.findall(m.group(2) or "")), value))

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.series)

    def get(self, name: str, **labels) -> float:
        """Sum of the series named `name` whose labels include `labels`; 0 when none matches. Fails the test if
        the metric is absent from /metrics altogether."""
        assert self.has(name), f"metric {name} is missing from /metrics:\n{self.text}"
        return sum(v for n, ls, v in self.series if n == name and all(ls.get(k) == str(x) for k, x in labels.items()))


# --------------------------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------------------------

VIDEO_SIZE = "640x360"
FPS = 30
GOP = 60


def publish(url: str, seconds: float, codec: str = "h264", extra: list[str] | tuple = (), *, ffmpeg: str | None = None,
            size: str = VIDEO_SIZE, rate: int = FPS, gop: int = GOP, tune: str | None = None,
            audio: str | None = "aac", video_args: list[str] | None = None, limit: float | None = None,
            name: str = "publisher") -> Proc:
    """Pushes `seconds` of lavfi testsrc2 + sine at real time (-re) to `url` as FLV.

    codec: h264 (libx264, default preset: B-frames), hevc (libx265), av1 (libsvtav1 or libaom-av1).
    audio: aac, opus or None."""
    ff = ffmpeg or tool("ffmpeg")
    argv = [ff, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        argv += ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    argv += ["-t", f"{seconds}", "-map", "0:v"] + (["-map", "1:a"] if audio else [])
    if video_args is not None:
        argv += video_args
    elif codec == "h264":
        argv += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
                 "-sc_threshold", "0"]
        if tune:
            argv += ["-tune", tune]
    elif codec == "hevc":
        argv += ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(gop),
                 "-x265-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"]
    elif codec == "av1":
        if has_encoder(ff, "libsvtav1"):
            argv += ["-c:v", "libsvtav1", "-preset", "12", "-pix_fmt", "yuv420p", "-g", str(gop),
                     "-svtav1-params", "lp=1"]
        else:
            argv += ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "10", "-row-mt", "1",
                     "-pix_fmt", "yuv420p", "-g", str(gop), "-b:v", "300k"]
    else:
        raise ValueError(codec)
    if audio == "aac":
        argv += ["-c:a", "aac", "-b:a", "96k", "-ar", "44100"]
    elif audio == "opus":
        argv += ["-c:a", "libopus", "-b:a", "64k", "-ar", "48000"]
    argv += list(extra) + ["-f", "flv", url]
    return Proc(name, argv, limit or seconds + 30)


def record(url: str, out_path: Path, *, ffmpeg: str | None = None, limit: float = 60, copyts: bool = True,
           extra_in: list[str] | tuple = (), name: str = "viewer") -> Proc:
    """Plays `url` and writes what arrives, untouched (`-c copy`), to out_path (.flv or .mkv). With copyts the
    file keeps the server's timestamps, so positions can be compared to the publisher's timeline."""
    ff = ffmpeg or tool("ffmpeg")
    argv = [ff, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *extra_in, "-i", url,
            "-map", "0:v?", "-map", "0:a?", "-c", "copy"]
    if copyts:
        argv += ["-copyts"]
    argv += ["-y", str(out_path)]
    return Proc(name, argv, limit)


@dataclass
class Packet:
    kind: str  # "video" | "audio" | ...
    pts: float | None
    dts: float | None
    key: bool
    size: int


@dataclass
class Media:
    path: Path
    streams: list[dict]
    packets: list[Packet]
    video_stream: dict | None = None
    audio_stream: dict | None = None
    video: list[Packet] = field(default_factory=list)
    audio: list[Packet] = field(default_factory=list)

    def summary(self) -> str:
        def span(ps):
            ts = [p.dts if p.dts is not None else p.pts for p in ps]
            ts = [t for t in ts if t is not None]
            return f"{len(ps)} pkts {min(ts):.3f}..{max(ts):.3f}s" if ts else f"{len(ps)} pkts"
        vs = self.video_stream or {}
        aus = self.audio_stream or {}
        return (f"{self.path.name}: video {vs.get('codec_name')} {vs.get('width')}x{vs.get('height')} "
                f"[{span(self.video)}], audio {aus.get('codec_name')} [{span(self.audio)}]")


def _f(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def probe_packets(path: Path) -> Media:
    """Every packet of a media file, in file order, with ffprobe (Debian's)."""
    path = Path(path)
    assert path.exists() and path.stat().st_size > 0, f"{path} was not written (viewer got nothing?)"
    r = run([tool("ffprobe"), "-v", "error", "-show_streams", "-show_packets", "-of", "json", path], limit=120)
    assert r.rc == 0, f"ffprobe cannot read {path}: {r.stderr[-2000:]}"
    data = json.loads(r.stdout or "{}")
    streams = data.get("streams", [])
    kinds = {s["index"]: s.get("codec_type") for s in streams}
    packets = [Packet(kinds.get(p.get("stream_index")), _f(p.get("pts_time")), _f(p.get("dts_time")),
                      "K" in (p.get("flags") or ""), int(p.get("size") or 0)) for p in data.get("packets", [])]
    m = Media(path, streams, packets)
    m.video_stream = next((s for s in streams if s.get("codec_type") == "video"), None)
    m.audio_stream = next((s for s in streams if s.get("codec_type") == "audio"), None)
    m.video = [p for p in packets if p.kind == "video"]
    m.audio = [p for p in packets if p.kind == "audio"]
    return m


def decode_errors(path: Path) -> list[str]:
    """Lines ffmpeg prints at level error while decoding the whole file (empty: clean)."""
    # -copyts: decode on the file's own timeline (else ffmpeg's null muxer complains about its own rounding of
    # millisecond FLV timestamps to 1/30 s when a recording does not start at 0).
    r = run([tool("ffmpeg"), "-nostdin", "-v", "error", "-copyts", "-i", path, "-map", "0:v?", "-map", "0:a?",
             "-f", "null", "-"], limit=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if r.rc != 0 and not lines:
        lines = [f"ffmpeg exited with {r.rc}"]
    return lines


def decoded_video_frames(path: Path) -> tuple[int, int]:
    """(packets read, frames decoded) of the first video stream."""
    r = run([tool("ffprobe"), "-v", "error", "-count_frames", "-count_packets", "-select_streams", "v:0",
             "-show_entries", "stream=nb_read_frames,nb_read_packets", "-of", "json", path], limit=120)
    s = json.loads(r.stdout or "{}").get("streams", [{}])[0]
    return int(s.get("nb_read_packets") or 0), int(s.get("nb_read_frames") or 0)


def check_media(path: Path, *, vcodec: str = "h264", acodec: str | None = "aac", size: str = VIDEO_SIZE,
                fps: int = FPS, max_gap: float = 0.1, dts: bool = True, min_seconds: float = 1.0,
                audio_monotonic: bool = True) -> Media:
    """The checks every viewer output must pass; returns the probed media for further assertions."""
    m = probe_packets(path)
    info = m.summary()
    assert m.video_stream, f"no video stream in what the viewer got: {info}"
    assert m.video_stream.get("codec_name") == vcodec, f"video codec {m.video_stream.get('codec_name')} != {vcodec}: {info}"
    w, h = (int(x) for x in size.split("x"))
    assert (m.video_stream.get("width"), m.video_stream.get("height")) == (w, h), f"resolution: {info}"
    if acodec:
        assert m.audio_stream, f"no audio stream in what the viewer got: {info}"
        assert m.audio_stream.get("codec_name") == acodec, f"audio codec: {info}"
        assert len(m.audio) > 10, f"too few audio packets: {info}"
    assert m.video, f"no video packets: {info}"
    assert m.video[0].key, f"first video packet is not a keyframe: {info}"
    if dts:
        ts = [p.dts for p in m.video]
        assert None not in ts, f"video packets without DTS: {info}"
    else:
        ts = sorted(p.pts for p in m.video)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(ts, ts[1:])) if not b > a]
    assert not bad, f"video {'DTS' if dts else 'PTS'} not strictly increasing at {bad[:5]}: {info}"
    gaps = [(round(a, 3), round(b - a, 3)) for a, b in zip(ts, ts[1:]) if b - a > max_gap]
    assert not gaps, f"gaps > {max_gap * 1000:.0f} ms between video frames (at, gap): {gaps[:8]}: {info}"
    span = ts[-1] - ts[0]
    assert span >= min_seconds, f"only {span:.2f}s of video: {info}"
    expected = span * fps + 1
    assert abs(len(m.video) - expected) <= max(3, 0.03 * expected), \
        f"{len(m.video)} video frames over {span:.2f}s at {fps} fps (expected ~{expected:.0f}): {info}"
    if acodec and audio_monotonic:
        ats = [p.dts for p in m.audio if p.dts is not None]
        back = [(round(a, 3), round(b, 3)) for a, b in zip(ats, ats[1:]) if b < a]
        assert not back, f"audio timestamps go backwards: {back[:5]}: {info}"
    errors = decode_errors(path)
    assert not errors, f"decode errors in {path.name}:\n" + "\n".join(errors[:20])
    return m


# --------------------------------------------------------------------------------------------------------------
# FLV byte-level reading (HTTP-FLV responses)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FlvTag:
    type: int  # 8 audio, 9 video, 18 script
    timestamp: int
    data: bytes

    @property
    def is_video_config(self) -> bool:
        if self.type != 9 or not self.data:
            return False
        b = self.data[0]
        if b & 0x80:  # Enhanced RTMP: ExVideoTagHeader, PacketType in the low nibble, 0 = SequenceStart
            return (b & 0x0F) == 0
        return (b & 0x0F) == 7 and len(self.data) > 1 and self.data[1] == 0  # AVC sequence header

    @property
    def is_video_keyframe(self) -> bool:
        return self.type == 9 and bool(self.data) and ((self.data[0] >> 4) & 0x07) == 1

    @property
    def is_audio_config(self) -> bool:
        if self.type != 8 or not self.data:
            return False
        fmt = self.data[0] >> 4
        if fmt == 10:  # AAC
            return len(self.data) > 1 and self.data[1] == 0
        if fmt == 9:  # Enhanced RTMP ExAudioTagHeader: AudioPacketType in the low nibble, 0 = SequenceStart
            return (self.data[0] & 0x0F) == 0
        return False

    @property
    def fourcc(self) -> bytes | None:
        if self.type == 9 and self.data and self.data[0] & 0x80:
            return self.data[1:5]
        if self.type == 8 and self.data and self.data[0] >> 4 == 9:
            return self.data[1:5]
        return None


class FlvReader:
    """Reads an FLV byte stream from a `read(n)` callable, checking the framing as it goes."""

    def __init__(self, read):
        self._read = read
        self.header: bytes = self.read_exact(9)
        assert self.header[:3] == b"FLV", f"not an FLV stream: header {self.header!r}"
        assert self.header[3] == 1, f"FLV version {self.header[3]}"
        assert struct.unpack(">I", self.header[5:9])[0] == 9, f"FLV header size: {self.header!r}"
        prev0 = struct.unpack(">I", self.read_exact(4))[0]
        assert prev0 == 0, f"PreviousTagSize0 = {prev0}"

    def read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._read(n - len(buf))
            if not chunk:
                raise EOFError(f"FLV stream ended after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def tag(self) -> FlvTag:
        head = self.read_exact(11)
        ttype = head[0] & 0x1F
        size = int.from_bytes(head[1:4], "big")
        ts = int.from_bytes(head[4:7], "big") | (head[7] << 24)
        assert int.from_bytes(head[8:11], "big") == 0, "FLV StreamID must be 0"
        data = self.read_exact(size)
        prev = struct.unpack(">I", self.read_exact(4))[0]
        assert prev == size + 11, f"PreviousTagSize {prev} != {size + 11} for a type-{ttype} tag"
        return FlvTag(ttype, ts, data)


# --------------------------------------------------------------------------------------------------------------
# fixtures and reporting
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def binary() -> str:
    return ferrocast_bin()


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory, binary):
    """make(env=..., args=..., rtmps=..., start=True) -> a started Server; all stopped at module end."""
    made: list[Server] = []

    def make(env: dict[str, str] | None = None, start: bool = True, **kw) -> Server:
        s = Server(tmp_path_factory.mktemp("ferrocast"), env=env, **kw)
        made.append(s)
        return s.start() if start else s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(autouse=True, scope="module")
def _module_marks():
    _Marks.module_procs = len(_ALL_PROCS)
    _Marks.module_servers = len(_ALL_SERVERS)
    yield
    for p in _ALL_PROCS[_Marks.module_procs:]:
        p.signal(signal.SIGKILL)


@pytest.fixture(autouse=True)
def _test_marks():
    _Marks.test_procs = len(_ALL_PROCS)
    yield
    for p in _ALL_PROCS[_Marks.test_procs:]:
        p.signal(signal.SIGKILL)


def pytest_collection_modifyitems(items):
    # A test that hangs despite the per-process limits is stopped (pytest-timeout, when installed).
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(240))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not (rep.failed and rep.when in ("setup", "call")):
        return
    for s in _ALL_SERVERS[_Marks.module_servers:]:
        rep.sections.append((f"ferrocast log {s.log} (last 150 lines)", s.tail(150)))
    procs = _ALL_PROCS[_Marks.module_procs:]
    for p in procs[-12:]:
        rep.sections.append((f"{p.name} rc={p.popen.poll()} {p.log} (last 25 lines)", p.tail(25)))


def pytest_sessionfinish(session, exitstatus):
    # Client and server logs are kept for a failed run (their paths are in the failure report).
    _kill_everything()
    if exitstatus == 0 and _LOG_DIR is not None:
        shutil.rmtree(_LOG_DIR, ignore_errors=True)
