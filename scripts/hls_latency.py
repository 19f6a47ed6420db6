#!/usr/bin/env python3
"""Measures how soon HLS media is available to players after it reached the server (classic and LL-HLS).

ferrocast stamps every segment with EXT-X-PROGRAM-DATE-TIME = the wall clock when its first frame arrived. This
probe follows a live playlist as a player does and, for each new segment (classic) or part (LL-HLS, blocking
reloads), records `now - arrival of the media's first frame`. Run it on the server's machine (one clock).

    scripts/hls_latency.py http://127.0.0.1:8080/live/bench.m3u8 --seconds 30            # classic (TS)
    scripts/hls_latency.py "http://127.0.0.1:8080/live/bench.m3u8?format=fmp4" --ll      # LL-HLS

A player adds its hold-back on top: 3 target durations for classic HLS, PART-HOLD-BACK for LL-HLS; the
encoder's own delay comes before. The report prints both the measured availability and that estimate.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from datetime import datetime

import requests


def pdt(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse(text: str):
    """(target, part_target, hold_back, [[msn, pdt, duration, [part durations]]], open part durations)."""
    target = float(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))
    m = re.search(r"PART-TARGET=([\d.]+)", text)
    part_target = float(m.group(1)) if m else None
    m = re.search(r"PART-HOLD-BACK=([\d.]+)", text)
    hold = float(m.group(1)) if m else 3 * target
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    segs, parts, date = [], [], None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = pdt(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            parts.append(float(re.search(r"DURATION=([\d.]+)", line).group(1)))
        elif line.startswith("#EXTINF:"):
            segs.append([seq, date, float(line[8:].split(",")[0]), parts])
            seq, parts, date = seq + 1, [], None
    return target, part_target, hold, segs, parts


def classic(url: str, seconds: float) -> tuple[list[float], list[float]]:
    """Returns (first frame -> segment available, segment end -> segment available) for each new segment."""
    seen, out, after_end, end = None, [], [], time.time() + seconds
    while time.time() < end:
        text = requests.get(url, timeout=10).text
        now = time.time()
        _, _, _, segs, _ = parse(text)
        if segs:
            last = segs[-1]
            if seen is not None and last[0] > seen and last[1]:
                # The segment became available now; its first frame arrived at PDT.
                out.append(now - last[1])
                after_end.append(now - last[1] - last[2])
            seen = last[0]
        time.sleep(0.05)
    return out, after_end


def low_latency(url: str, seconds: float) -> tuple[list[float], list[float]]:
    """Returns (first frame -> part available, part end -> part available) for each new part."""
    sep = "&" if "?" in url else "?"
    text = requests.get(url, timeout=10).text
    first, after_end, end = [], [], time.time() + seconds
    while time.time() < end:
        _, _, _, segs, open_parts = parse(text)
        msn = (segs[-1][0] + 1) if segs else 0
        nxt = len(open_parts)
        text = requests.get(f"{url}{sep}_HLS_msn={msn}&_HLS_part={nxt}", timeout=10).text
        now = time.time()
        _, _, _, segs2, open2 = parse(text)
        # The segment holding the new part: the open one, or the one just closed.
        if len(open2) > nxt:
            base_pdt = None
            m = re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", text)
            # The open segment has no PDT of its own; it starts where the last complete one ends.
            if segs2 and segs2[-1][1]:
                base_pdt = segs2[-1][1] + segs2[-1][2]
            elif m:
                base_pdt = pdt(m[-1])
            parts = open2
        else:
            seg = next((s for s in segs2 if s[0] == msn), None)
            if not seg or not seg[1] or len(seg[3]) <= nxt:
                continue
            base_pdt, parts = seg[1], seg[3]
        if base_pdt is None:
            continue
        start = base_pdt + sum(parts[:nxt])
        first.append(now - start)
        after_end.append(now - (start + parts[nxt]))
    return first, after_end


def summary(name: str, xs: list[float]) -> str:
    if not xs:
        return f"{name}: no samples"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"{name}: n={len(xs)} median {statistics.median(xs) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--ll", action="store_true", help="LL-HLS: follow parts with blocking playlist reloads")
    a = ap.parse_args()
    text = requests.get(a.url, timeout=10).text
    target, part_target, hold, _, _ = parse(text)
    if a.ll:
        first, after_end = low_latency(a.url, a.seconds)
        print(summary("first frame -> part available", first))
        print(summary("part complete -> part available (server overhead)", after_end))
        if after_end:
            # A player sits PART-HOLD-BACK behind the live edge, which is the end of the newest part.
            est = statistics.median(after_end) + hold
            print(f"player estimate: overhead + PART-HOLD-BACK {hold:.2f}s = {est:.2f}s behind ingest (plus the encoder)")
    else:
        first, after_end = classic(a.url, a.seconds)
        print(summary("first frame -> segment available", first))
        print(summary("segment complete -> segment available (server overhead + poll)", after_end))
        if after_end:
            # Players start 3 target durations behind the end of the newest segment (RFC 8216 §6.3.3).
            est = statistics.median(after_end) + 3 * target
            print(f"player estimate: overhead + 3 x TARGETDURATION {3 * target:.0f}s = {est:.2f}s behind ingest (plus the encoder)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
