"""Time shifting (issue 4 item 6): templates and rules through the official SDK, recording of a live stream into
the time index, `tsStart`/`tsEnd` VOD windows in every tsFormat, `tsDelay` live playlists, ffmpeg decoding the
result, DescribeTimeShiftStreamList / DescribeTimeShiftRecordDetail, and retention deleting old segments."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import check_media, publish, run, tool, wait_until
from test_api import PUSH, SECRET_ID, SECRET_KEY, call, client, error_code

STREAM = "tshift"
ITEM_S = 3
RETENTION_S = 30
ENV = {
    "FERROCAST_API_SECRET_ID": SECRET_ID,
    "FERROCAST_API_SECRET_KEY": SECRET_KEY,
    "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500",
    "FERROCAST_TIMESHIFT_CLEANUP_INTERVAL_MS": "1000",
}


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(ENV)


def get(server, query: str, stream: str = STREAM) -> requests.Response:
    return requests.get(server.http(f"/live/{stream}.m3u8?{query}"), timeout=10)


def entries(text: str) -> list[tuple[float, float, str]]:
    """(PROGRAM-DATE-TIME as UNIX s, EXTINF duration, URI) of every segment."""
    out, pdt, dur = [], None, None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            out.append((pdt, dur, line))
    return out


def segment_files(server) -> list:
    root = server.data_dir / "timeshift" / PUSH / "live" / STREAM
    return sorted(root.glob("*/*.ts")) if root.exists() else []


def test_timeshift_end_to_end(server, tmp_path):
    c = client(server)
    # Templates: validation, create, modify, describe.
    assert error_code(c, "CreateLiveTimeShiftTemplate",
                      {"TemplateName": "bad", "Duration": 86400, "ItemDuration": 11}) == "InvalidParameterValue"
    tid = call(c, "CreateLiveTimeShiftTemplate",
               {"TemplateName": "short", "Duration": 86400, "ItemDuration": 5, "Description": "d"}).TemplateId
    call(c, "ModifyLiveTimeShiftTemplate", {"TemplateId": tid, "Duration": RETENTION_S, "ItemDuration": ITEM_S})
    t = [t for t in call(c, "DescribeLiveTimeShiftTemplates", {}).Templates if t.TemplateId == tid][0]
    assert (t.TemplateName, t.Duration, t.ItemDuration, t.Description) == ("short", RETENTION_S, ITEM_S, "d")
    other = call(c, "CreateLiveTimeShiftTemplate", {"TemplateName": "other", "Duration": 86400}).TemplateId
    # Rules: a domain-wide rule with another template; the exact stream rule wins.
    call(c, "CreateLiveTimeShiftRule", {"DomainName": PUSH, "AppName": "*", "StreamName": "*", "TemplateId": other})
    call(c, "CreateLiveTimeShiftRule", {"DomainName": PUSH, "AppName": "live", "StreamName": STREAM,
                                        "TemplateId": tid})
    rules = call(c, "DescribeLiveTimeShiftRules", {}).Rules
    assert {(r.AppName, r.StreamName, r.TemplateId) for r in rules} == {("*", "*", other), ("live", STREAM, tid)}
    assert error_code(c, "DeleteLiveTimeShiftTemplate", {"TemplateId": tid}) == "FailedOperation.ConfInUsed"
    call(c, "DeleteLiveTimeShiftRule", {"DomainName": PUSH, "AppName": "*", "StreamName": "*"})
    call(c, "DeleteLiveTimeShiftTemplate", {"TemplateId": other})

    # Record 21 s of a 25 fps stream with a keyframe every second: 3 s segments.
    started = time.time()
    pub = publish(server.rtmp(STREAM), 21, rate=25, gop=25, name="pub-timeshift")
    server.wait_live(STREAM)
    wait_until(lambda: len(segment_files(server)) >= 4, 30, what="four time-shift segments")

    # tsDelay: a live playlist whose newest segment starts ~N s behind now.
    r = get(server, "txTimeShift=ON&tsDelay=6&tsCodecname=transcode")
    assert r.status_code == 200, r.text
    live = entries(r.text)
    assert "#EXT-X-ENDLIST" not in r.text and "#EXT-X-PLAYLIST-TYPE" not in r.text
    behind = time.time() - live[-1][0]
    assert 6 - 0.5 <= behind <= 6 + ITEM_S + 1.5, f"newest segment starts {behind:.1f} s behind now"
    seq0 = int(r.text.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0])
    assert live[0][2].startswith(f"{STREAM}/timeshift/") and live[0][2].endswith(f"/{seq0}.ts")
    pub.wait(60)
    time.sleep(1.5)

    # The whole session, then an exact window inside it.
    everything = get(server, f"txTimeshift=on&tsStart={int(started) - 5}&tsEnd={int(time.time()) + 1}")
    assert everything.status_code == 200, everything.text
    allsegs = entries(everything.text)
    assert len(allsegs) >= 5, everything.text
    for (a, da, _), (b, _, _) in zip(allsegs, allsegs[1:]):
        assert abs(a + da - b) < 0.3, f"segments are not contiguous: {allsegs}"
    start_ms = int(allsegs[1][0] * 1000) + 1500
    end_ms = start_ms + 5000
    r = get(server, f"txTimeshift=on&tsFormat=unix_ms&tsStart={start_ms}&tsEnd={end_ms}")
    assert r.status_code == 200, r.text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in r.text and r.text.rstrip().endswith("#EXT-X-ENDLIST")
    w = entries(r.text)
    first, last = w[0], w[-1]
    assert first[0] * 1000 <= start_ms < (first[0] + first[1]) * 1000, (start_ms, w)
    assert last[0] * 1000 <= end_ms - 1 < (last[0] + last[1]) * 1000, (end_ms, w)
    assert [e[2] for e in w] == [e[2] for e in allsegs if e[0] * 1000 < end_ms and (e[0] + e[1]) * 1000 > start_ms]

    # The same window in human_s_8 (whole seconds, UTC+8) equals the unix_s form.
    s, e = start_ms // 1000, end_ms // 1000 + 1
    human = lambda t: datetime.fromtimestamp(t, timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")  # noqa: E731
    a = get(server, f"txTimeshift=on&tsFormat=unix_s&tsStart={s}&tsEnd={e}").text
    b = get(server, f"txTimeshift=on&tsFormat=human_s_8&tsStart={human(s)}&tsEnd={human(e)}").text
    assert a == b and entries(a)

    # Refusals: shorter than a segment, longer than 6 h, malformed.
    r = get(server, f"txTimeshift=on&tsFormat=unix_ms&tsStart={start_ms}&tsEnd={start_ms + 2000}")
    assert r.status_code == 400 and "at least one segment" in r.text, r.text
    r = get(server, f"txTimeshift=on&tsStart={s}&tsEnd={s + 21601}")
    assert r.status_code == 400 and "6 h" in r.text, r.text
    assert get(server, "txTimeshift=on&tsFormat=weird&tsStart=1&tsEnd=2").status_code == 400
    assert get(server, "txTimeshift=on&tsStart=1000&tsEnd=2000").status_code == 404

    # ffmpeg plays the window and decodes every frame.
    out = tmp_path / "window.ts"
    url = server.http(f"/live/{STREAM}.m3u8?txTimeshift=on&tsFormat=unix_ms&tsStart={start_ms}&tsEnd={end_ms}")
    rr = run([tool("ffmpeg"), "-nostdin", "-v", "error", "-i", url, "-map", "0:v", "-map", "0:a", "-c", "copy",
              "-y", str(out)], limit=60)
    assert rr.rc == 0, rr.stderr[-2000:]
    m = check_media(out, fps=25, min_seconds=len(w) * ITEM_S - 1)
    assert abs((m.video[-1].dts - m.video[0].dts) - sum(x[1] for x in w)) < 0.2

    # The API lists the session.
    now = int(time.time())
    lst = call(c, "DescribeTimeShiftStreamList", {"StartTime": now - 300, "EndTime": now + 60, "Domain": PUSH})
    mine = [x for x in lst.StreamList if x.StreamName == STREAM]
    assert lst.TotalSize >= 1 and mine and mine[0].AppName == "live" and mine[0].Duration == RETENTION_S
    assert mine[0].StartTime <= int(allsegs[0][0]) + 1 and mine[0].EndTime >= int(allsegs[-1][0])
    rec = call(c, "DescribeTimeShiftRecordDetail", {"Domain": PUSH, "AppName": "live", "StreamName": STREAM,
                                                     "StartTime": now - 300, "EndTime": now + 60}).RecordList
    assert len(rec) == 1 and rec[0].Sid and rec[0].Sid in allsegs[0][2]

    # Retention: segments go RETENTION_S after their end, files and index rows alike.
    files = segment_files(server)
    first_file = files[0]
    wait_until(lambda: not first_file.exists(), allsegs[0][0] + allsegs[0][1] + RETENTION_S + 5 - time.time(),
               what="the oldest segment file to be deleted")
    seg_url = server.http(f"/live/{allsegs[0][2]}")
    assert requests.get(seg_url, timeout=10).status_code == 404
    deadline = allsegs[-1][0] + allsegs[-1][1] + RETENTION_S + 5 - time.time()
    wait_until(lambda: not segment_files(server), deadline, what="every segment file to be deleted")
    r = get(server, f"txTimeshift=on&tsStart={int(started) - 5}&tsEnd={int(time.time()) + 1}")
    assert r.status_code == 404, r.text
    wait_until(lambda: not call(c, "DescribeTimeShiftRecordDetail", {
        "Domain": PUSH, "AppName": "live", "StreamName": STREAM, "StartTime": now - 300,
        "EndTime": now + 60}).RecordList, 5, what="the empty session to be deleted")
