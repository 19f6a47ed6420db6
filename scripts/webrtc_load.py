#!/usr/bin/env python3
"""WHEP viewers per CPU core: the server's CPU time (utime + stime from /proc/PID/stat) over a window with one
RTMP-published H.264 + AAC stream (640x360, 30 fps, x264 zerolatency) and no viewer, then with N aiortc WHEP
viewers of it (in a separate process, so their decoding does not count). Per-viewer cost = (with - without) / N;
the AAC -> Opus bridge runs once for all N viewers and is included.

    FERROCAST_BIN=target/release/ferrocast .venv/bin/python scripts/webrtc_load.py [viewers] [seconds]
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import Server, publish  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

VIEWERS = """
import asyncio, sys
sys.path.insert(0, {tests!r})
import webrtc_client
async def main():
    rs = await asyncio.gather(*[webrtc_client.whep_play({url!r}, {secs}) for _ in range({n})])
    print("viewers", [(r.status, r.video_frames, r.audio_frames) for r in rs], flush=True)
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def window(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    s = Server(Path(tempfile.mkdtemp(prefix="rtc-load-"))).start()
    try:
        pub = publish(s.rtmp("load"), secs * 3 + 30, tune="zerolatency")
        s.wait_media("load")
        time.sleep(1)
        pid = s.proc.pid
        base = window(pid, secs)
        code = VIEWERS.format(tests=str(HERE.parent / "tests"), url=s.http("/whep/live/load"), secs=secs + 6, n=n)
        viewers = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(4)  # connect, GOP-cache burst
        loaded = window(pid, secs)
        out, _ = viewers.communicate(timeout=secs + 60)
        per = (loaded - base) / n
        print(f"server CPU: {base:.1f}% of a core with the publisher only, {loaded:.1f}% with {n} WHEP viewers")
        print(f"per WHEP viewer: {per:.2f}% of a core -> ~{100 / per:.0f} viewers per core" if per > 0 else "n/a")
        print(out.strip().splitlines()[-1] if out.strip() else "viewers printed nothing")
        pub.kill()
    finally:
        s.stop()


if __name__ == "__main__":
    main()
