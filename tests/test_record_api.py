"""Recording and screenshot configuration through the official SDK: record/snapshot templates (every field
round-trips, the documented ranges and the 50-template limit), rules (one per DomainName+AppName+StreamName, the
50-rule limit for recording, in-use templates cannot be deleted), and record/screenshot tasks (window checks,
real-time tasks only for a live stream, StopRecordTask/DeleteRecordTask, DescribeRecordTask with ScrollToken)."""

from __future__ import annotations

import re
import time

import pytest

from conftest import publish
from test_api import PUSH, SECRET_ID, SECRET_KEY, call, client, error_code

LIVE = "rectask"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
        "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500",
    })


def record_param(enable: int, interval: int, n: int) -> dict:
    return {"Enable": enable, "RecordInterval": interval, "StorageTime": 86400 * n, "VodSubAppId": n,
            "VodFileName": f"{{StreamID}}-{n}", "Procedure": f"proc{n}", "StorageMode": "cold", "ClassId": n,
            "CosBucketName": f"bucket{n}", "CosBucketRegion": "ap-guangzhou",
            "CosBucketPath": f"/{{Domain}}/{{StreamID}}/{n}"}


FULL_TEMPLATE = {
    "TemplateName": "full_模板-1",
    "Description": "every field",
    "FlvParam": record_param(1, 600, 1),
    "HlsParam": record_param(1, 0, 2),
    "Mp4Param": record_param(0, 43200, 3),
    "AacParam": record_param(1, 7200, 4),
    "Mp3Param": record_param(0, 60, 5),
    "HlsSpecialParam": {"FlowContinueDuration": 1800},
    "FlvSpecialParam": {"UploadInRecording": True},
    "RemoveWatermark": True,
    "CosStore": 1,
}

PARAMS = ["FlvParam", "HlsParam", "Mp4Param", "AacParam", "Mp3Param"]


def as_dict(param) -> dict:
    return {k: getattr(param, k) for k in record_param(0, 0, 0)}


def check_record_template(t, want: dict, tid: int) -> None:
    assert (t.TemplateId, t.TemplateName, t.Description) == (tid, want["TemplateName"], want["Description"])
    for name in PARAMS:
        assert as_dict(getattr(t, name)) == want[name], name
    assert t.HlsSpecialParam.FlowContinueDuration == want["HlsSpecialParam"]["FlowContinueDuration"]
    assert t.FlvSpecialParam.UploadInRecording is want["FlvSpecialParam"]["UploadInRecording"]
    assert (t.RemoveWatermark, t.CosStore, t.IsDelayLive) == (want["RemoveWatermark"], want["CosStore"], 0)


def all_record_templates(c) -> list:
    return (call(c, "DescribeLiveRecordTemplates", {}).Templates
            + call(c, "DescribeLiveRecordTemplates", {"IsDelayLive": 1}).Templates)


def test_record_template_round_trip_validation_and_limit(server):
    c = client(server)
    tid = call(c, "CreateLiveRecordTemplate", FULL_TEMPLATE).TemplateId
    check_record_template(call(c, "DescribeLiveRecordTemplate", {"TemplateId": tid}).Template, FULL_TEMPLATE, tid)

    # Modify: fields present replace the stored ones, field by field inside a RecordParam.
    call(c, "ModifyLiveRecordTemplate", {"TemplateId": tid, "Description": "changed",
                                         "FlvParam": {"RecordInterval": 43200, "CosBucketPath": "/x"},
                                         "Mp3Param": {"Enable": 1}, "HlsSpecialParam": {"FlowContinueDuration": 0},
                                         "FlvSpecialParam": {"UploadInRecording": False}, "RemoveWatermark": False})
    want = {**FULL_TEMPLATE, "Description": "changed", "HlsSpecialParam": {"FlowContinueDuration": 0},
            "FlvSpecialParam": {"UploadInRecording": False}, "RemoveWatermark": False,
            "FlvParam": {**FULL_TEMPLATE["FlvParam"], "RecordInterval": 43200, "CosBucketPath": "/x"},
            "Mp3Param": {**FULL_TEMPLATE["Mp3Param"], "Enable": 1}}
    check_record_template(call(c, "DescribeLiveRecordTemplate", {"TemplateId": tid}).Template, want, tid)
    listed = [t for t in call(c, "DescribeLiveRecordTemplates", {}).Templates if t.TemplateId == tid]
    assert len(listed) == 1
    check_record_template(listed[0], want, tid)
    assert tid not in [t.TemplateId for t in call(c, "DescribeLiveRecordTemplates", {"IsDelayLive": 1}).Templates]

    # The same template through the legacy form-encoded signing (nested params flattened as FlvParam.Enable=...).
    legacy = client(server, "HmacSHA256", "POST")
    lid = call(legacy, "CreateLiveRecordTemplate", FULL_TEMPLATE).TemplateId
    check_record_template(call(legacy, "DescribeLiveRecordTemplate", {"TemplateId": lid}).Template,
                          FULL_TEMPLATE, lid)
    call(legacy, "DeleteLiveRecordTemplate", {"TemplateId": lid})

    # A template without any format is valid ("do not record"); defaults: disabled, 1800 s.
    none = call(c, "CreateLiveRecordTemplate", {"TemplateName": "norecord", "IsDelayLive": 1}).TemplateId
    t = call(c, "DescribeLiveRecordTemplate", {"TemplateId": none}).Template
    assert [(getattr(t, p).Enable, getattr(t, p).RecordInterval) for p in PARAMS] == [(0, 1800)] * 5
    assert t.IsDelayLive == 1
    assert none in [t.TemplateId for t in call(c, "DescribeLiveRecordTemplates", {"IsDelayLive": 1}).Templates]

    bad = [
        ({"FlvParam": {"Enable": 1, "RecordInterval": 59}}, "InvalidParameterValue"),
        ({"Mp4Param": {"RecordInterval": 43201}}, "InvalidParameterValue"),
        ({"AacParam": {"RecordInterval": 7201}}, "InvalidParameterValue"),
        ({"HlsParam": {"RecordInterval": -1}}, "InvalidParameterValue"),
        ({"FlvParam": {"StorageTime": 1500 * 86400 + 1}}, "InvalidParameterValue"),
        ({"HlsSpecialParam": {"FlowContinueDuration": 1801}}, "InvalidParameterValue"),
        ({"FlvParam": {"CosBucketPath": "no-leading-slash"}}, "InvalidParameterValue"),
        ({"TemplateName": "has space"}, "InvalidParameter"),
    ]
    for extra, code in bad:
        assert error_code(c, "CreateLiveRecordTemplate", {"TemplateName": "bad", **extra}) == code, extra
        assert error_code(c, "ModifyLiveRecordTemplate", {"TemplateId": tid, **extra}) == code, extra
    assert error_code(c, "CreateLiveRecordTemplate", {"Description": "no name"}) == "MissingParameter"
    assert error_code(c, "DescribeLiveRecordTemplate", {"TemplateId": 999999}) == "InternalError.ConfNotFound"
    assert error_code(c, "ModifyLiveRecordTemplate", {"TemplateId": 999999}) == "InternalError.ConfNotFound"

    # At most 50 templates.
    extra_ids = [call(c, "CreateLiveRecordTemplate", {"TemplateName": f"fill{i}"}).TemplateId
                 for i in range(50 - len(all_record_templates(c)))]
    assert len(all_record_templates(c)) == 50
    assert error_code(c, "CreateLiveRecordTemplate", {"TemplateName": "one_too_many"}) == "InternalError.ConfOutLimit"
    for i in extra_ids + [tid, none]:
        call(c, "DeleteLiveRecordTemplate", {"TemplateId": i})
    assert error_code(c, "DeleteLiveRecordTemplate", {"TemplateId": tid}) == "InternalError.ConfNotFound"
    assert all_record_templates(c) == []


def test_record_rules_unique_limited_and_pin_their_template(server):
    c = client(server)
    tid = call(c, "CreateLiveRecordTemplate", {"TemplateName": "rules", "FlvParam": {"Enable": 1}}).TemplateId
    targets = [("", ""), ("live", ""), ("", "s1"), ("live", "s1")]
    for app, stream in targets:
        call(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": app, "StreamName": stream, "TemplateId": tid})
    rules = call(c, "DescribeLiveRecordRules", {}).Rules
    assert sorted((r.DomainName, r.AppName, r.StreamName, r.TemplateId) for r in rules) == \
        sorted((PUSH, a, s, tid) for a, s in targets)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r.CreateTime) for r in rules)
    # One rule per (domain, app, stream); `*` is the same wildcard as "".
    for app, stream in [("live", "s1"), ("*", "*")]:
        assert error_code(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": app, "StreamName": stream,
                                                      "TemplateId": tid}) == "FailedOperation.RuleAlreadyExist"
    assert error_code(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": "x", "TemplateId": 999999}) \
        == "InvalidParameter.ConfNotFound"
    assert error_code(c, "CreateLiveRecordRule", {"DomainName": "bad domain", "TemplateId": tid}) \
        == "InvalidParameter.DomainFormatError"
    assert error_code(c, "DeleteLiveRecordTemplate", {"TemplateId": tid}) == "FailedOperation.ConfInUsed"

    # At most 50 rules.
    for i in range(50 - len(rules)):
        call(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": "fill", "StreamName": f"s{i}",
                                         "TemplateId": tid})
    assert error_code(c, "CreateLiveRecordRule", {"DomainName": PUSH, "AppName": "fill", "StreamName": "more",
                                                  "TemplateId": tid}) == "InternalError.RuleOutLimit"
    for r in call(c, "DescribeLiveRecordRules", {}).Rules:
        call(c, "DeleteLiveRecordRule", {"DomainName": r.DomainName, "AppName": r.AppName,
                                         "StreamName": r.StreamName})
    assert call(c, "DescribeLiveRecordRules", {}).Rules == []
    assert error_code(c, "DeleteLiveRecordRule", {"DomainName": PUSH, "AppName": "", "StreamName": ""}) \
        == "FailedOperation.NotFound"
    call(c, "DeleteLiveRecordTemplate", {"TemplateId": tid})


def task_window(c, action: str, params: dict) -> str:
    return error_code(c, action, {"DomainName": PUSH, "AppName": "live", "StreamName": "w", **params})


@pytest.mark.parametrize("kind", ["Record", "Screenshot"])
def test_window_tasks_validation_describe_and_paging(server, kind):
    c = client(server)
    create, describe = f"Create{kind}Task", f"Describe{kind}Task"
    if kind == "Record":
        tid = call(c, "CreateLiveRecordTemplate", {"TemplateName": "tasks", "Mp4Param": {"Enable": 1}}).TemplateId
        delete_template = "DeleteLiveRecordTemplate"
    else:
        tid = call(c, "CreateLiveSnapshotTemplate", {"TemplateName": "tasks", "CosAppId": 1, "CosBucket": "b",
                                                     "CosRegion": "r"}).TemplateId
        delete_template = "DeleteLiveSnapshotTemplate"
    now = int(time.time())
    # Documented limits: EndTime > StartTime and > now, < now + 7 days, EndTime - StartTime <= 24 h.
    for start, end in [(now + 100, now + 100), (now - 200, now - 100), (now + 10, now + 10 + 86401),
                       (now + 7 * 86400 - 100, now + 7 * 86400 + 100)]:
        assert task_window(c, create, {"StartTime": start, "EndTime": end, "TemplateId": tid}) \
            == "InvalidParameter.InvalidTaskTime", (start - now, end - now)
    assert task_window(c, create, {"StartTime": now + 10, "EndTime": now + 20, "TemplateId": 999999}) \
        == "InvalidParameter.TemplateNotFound"
    assert task_window(c, create, {"StartTime": now + 10, "EndTime": now + 20, "TemplateId": tid,
                                   "StreamType": 2}) == "InvalidParameterValue"
    assert error_code(c, create, {"DomainName": PUSH, "AppName": "live", "StartTime": now + 10,
                                  "EndTime": now + 20, "TemplateId": tid}) == "MissingParameter"
    # Without StartTime the task is real-time, which needs a live stream.
    assert task_window(c, create, {"EndTime": now + 600, "TemplateId": tid}) == "FailedOperation.HasNotLivingStream"

    ids = []
    for i in range(101):
        r = call(c, create, {"DomainName": PUSH, "AppName": "live", "StreamName": "page", "StartTime": now + 60 + i,
                             "EndTime": now + 3600, "TemplateId": tid, "StreamType": i % 2, "Extension": "ext"})
        assert re.fullmatch(r"[0-9a-f]{32}", r.TaskId), r.TaskId
        ids.append(r.TaskId)
    assert len(set(ids)) == 101
    assert error_code(c, delete_template, {"TemplateId": tid}) == "FailedOperation.ConfInUsed", \
        "pending tasks pin their template"
    query = {"StartTime": now, "EndTime": now + 7200, "StreamName": "page"}
    first = call(c, describe, query)
    assert len(first.TaskList) == 100 and first.ScrollToken
    t = first.TaskList[0]
    assert (t.TaskId, t.DomainName, t.AppName, t.StreamName, t.StartTime, t.EndTime, t.TemplateId, t.Stopped) == \
        (ids[0], PUSH, "live", "page", now + 60, now + 3600, tid, 0)
    second = call(c, describe, {**query, "ScrollToken": first.ScrollToken})
    assert [t.TaskId for t in first.TaskList + second.TaskList] == ids and second.ScrollToken == ""
    # Filters and the query window (the task's whole window must lie inside it).
    assert call(c, describe, {**query, "AppName": "other"}).TaskList == []
    assert call(c, describe, {**query, "EndTime": now + 3599}).TaskList == []
    assert len(call(c, describe, {"StartTime": now, "EndTime": now + 7200, "DomainName": PUSH.upper()}).TaskList) \
        == 100
    assert error_code(c, describe, {"StartTime": now, "EndTime": now + 7 * 86400 + 1}) == "InvalidParameterValue"
    assert error_code(c, describe, {"StartTime": now, "EndTime": now - 1}) == "InvalidParameterValue"
    assert error_code(c, describe, {**query, "ScrollToken": "garbage"}) == "InvalidParameterValue"

    # Stop: the task ends now and says when it was stopped; delete removes it.
    call(c, f"Stop{kind}Task", {"TaskId": ids[0]})
    stopped = call(c, describe, {"StartTime": now, "EndTime": now + 7200, "StreamName": "page"}).TaskList[0]
    assert stopped.TaskId == ids[0] and stopped.Stopped >= now
    assert stopped.EndTime == stopped.StartTime, "a task stopped before its start never runs"
    for i in ids:
        call(c, f"Delete{kind}Task", {"TaskId": i})
    assert call(c, describe, query).TaskList == []
    assert error_code(c, f"Delete{kind}Task", {"TaskId": ids[0]}) == "InvalidParameter.TaskNotExist"
    assert error_code(c, f"Stop{kind}Task", {"TaskId": ids[0]}) == "InvalidParameter.TaskNotExist"
    assert error_code(c, f"Stop{kind}Task", {"TaskId": "../etc"}) == "InvalidParameter.InvalidTaskId"
    call(c, delete_template, {"TemplateId": tid})


def test_realtime_tasks_for_a_live_stream(server):
    c = client(server)
    sid = call(c, "CreateLiveSnapshotTemplate", {"TemplateName": "rt", "CosAppId": 1, "CosBucket": "b",
                                                 "CosRegion": "r"}).TemplateId
    pub = publish(server.rtmp(LIVE), 30, name="pub-rectask")
    try:
        server.wait_live(LIVE)
        for kind, extra in [("Record", {}), ("Screenshot", {"TemplateId": sid})]:
            before = int(time.time())
            task_id = call(c, f"Create{kind}Task", {"DomainName": PUSH, "AppName": "live", "StreamName": LIVE,
                                                    "EndTime": before + 600, **extra}).TaskId
            after = int(time.time())
            listed = call(c, f"Describe{kind}Task", {"StartTime": before - 10, "EndTime": before + 3600}).TaskList
            assert [t.TaskId for t in listed] == [task_id], kind
            t = listed[0]
            assert before <= t.StartTime <= after and t.EndTime == before + 600 and t.Stopped == 0, kind
            assert t.TemplateId == extra.get("TemplateId", 0)
            call(c, f"Stop{kind}Task", {"TaskId": task_id})
            t = call(c, f"Describe{kind}Task", {"StartTime": before - 10, "EndTime": before + 3600}).TaskList[0]
            assert t.Stopped >= before and t.EndTime == t.Stopped, kind
            call(c, f"Stop{kind}Task", {"TaskId": task_id})
            assert call(c, f"Describe{kind}Task", {"StartTime": before - 10,
                                                   "EndTime": before + 3600}).TaskList[0].Stopped == t.Stopped
            call(c, f"Delete{kind}Task", {"TaskId": task_id})
            assert call(c, f"Describe{kind}Task", {"StartTime": before - 10, "EndTime": before + 3600}).TaskList == []
    finally:
        pub.kill()
    call(c, "DeleteLiveSnapshotTemplate", {"TemplateId": sid})


SNAPSHOT = {"TemplateName": "shot_截图", "Description": "d", "CosAppId": 1250000000, "CosBucket": "shots",
            "CosRegion": "ap-guangzhou", "SnapshotInterval": 2, "Width": 3000, "Height": 2000, "PornFlag": 1,
            "CosPrefix": "/{Year}/{StreamID}", "CosFileName": "{StreamID}-{Hour}{Ext}"}
SNAPSHOT_FIELDS = ["TemplateName", "Description", "CosAppId", "CosBucket", "CosRegion", "SnapshotInterval", "Width",
                   "Height", "PornFlag", "CosPrefix", "CosFileName"]


def test_snapshot_templates_and_rules(server):
    c = client(server)
    tid = call(c, "CreateLiveSnapshotTemplate", SNAPSHOT).TemplateId
    t = call(c, "DescribeLiveSnapshotTemplate", {"TemplateId": tid}).Template
    assert t.TemplateId == tid and {k: getattr(t, k) for k in SNAPSHOT_FIELDS} == SNAPSHOT
    assert not t.CosSecretId and not t.CosSecretKey, "no storage credential is ever returned"
    change = {"SnapshotInterval": 300, "Width": 0, "Height": 0, "PornFlag": 0, "CosBucket": "other",
              "CosRegion": "eu-frankfurt", "Description": "changed"}
    call(c, "ModifyLiveSnapshotTemplate", {"TemplateId": tid, **change})
    listed = [t for t in call(c, "DescribeLiveSnapshotTemplates", {}).Templates if t.TemplateId == tid]
    assert len(listed) == 1 and {k: getattr(listed[0], k) for k in SNAPSHOT_FIELDS} == {**SNAPSHOT, **change}

    # Defaults: 10 s, the source size, the documented folder and file name templates.
    d = call(c, "CreateLiveSnapshotTemplate", {"TemplateName": "defaults", "CosAppId": 1, "CosBucket": "b",
                                               "CosRegion": "r"}).TemplateId
    t = call(c, "DescribeLiveSnapshotTemplate", {"TemplateId": d}).Template
    assert (t.SnapshotInterval, t.Width, t.Height, t.PornFlag) == (10, 0, 0, 0)
    assert (t.CosPrefix, t.CosFileName) == ("/{Year}-{Month}-{Day}",
                                            "{StreamID}-screenshot-{Hour}-{Minute}-{Second}-{Width}x{Height}{Ext}")
    for extra in [{"SnapshotInterval": 1}, {"SnapshotInterval": 301}, {"Width": 3001}, {"Height": 2001},
                  {"PornFlag": 2}, {"CosBucket": "shots-1250000000"}]:
        assert error_code(c, "CreateLiveSnapshotTemplate", {**SNAPSHOT, **extra}) == "InvalidParameterValue", extra
        assert error_code(c, "ModifyLiveSnapshotTemplate", {"TemplateId": tid, **extra}) == "InvalidParameterValue"
    for missing in ["TemplateName", "CosAppId", "CosBucket", "CosRegion"]:
        params = {k: v for k, v in SNAPSHOT.items() if k != missing}
        assert error_code(c, "CreateLiveSnapshotTemplate", params) == "MissingParameter", missing
    assert error_code(c, "DescribeLiveSnapshotTemplate", {"TemplateId": 999999}) == "InternalError.ConfNotFound"

    # Rules: one per (domain, app, stream); a bound template cannot be deleted.
    call(c, "CreateLiveSnapshotRule", {"DomainName": PUSH, "TemplateId": tid})
    call(c, "CreateLiveSnapshotRule", {"DomainName": PUSH, "AppName": "live", "StreamName": "s", "TemplateId": d})
    rules = call(c, "DescribeLiveSnapshotRules", {}).Rules
    assert sorted((r.DomainName, r.AppName, r.StreamName, r.TemplateId) for r in rules) == \
        [(PUSH, "", "", tid), (PUSH, "live", "s", d)]
    assert error_code(c, "CreateLiveSnapshotRule", {"DomainName": PUSH, "AppName": "*", "TemplateId": d}) \
        == "FailedOperation.RuleAlreadyExist"
    assert error_code(c, "CreateLiveSnapshotRule", {"DomainName": PUSH, "TemplateId": 999999}) \
        == "InvalidParameter.ConfNotFound"
    assert error_code(c, "DeleteLiveSnapshotTemplate", {"TemplateId": tid}) == "FailedOperation.ConfInUsed"
    call(c, "DeleteLiveSnapshotRule", {"DomainName": PUSH, "AppName": "", "StreamName": ""})
    assert error_code(c, "DeleteLiveSnapshotRule", {"DomainName": PUSH, "AppName": "", "StreamName": ""}) \
        == "FailedOperation.NotFound"
    call(c, "DeleteLiveSnapshotTemplate", {"TemplateId": tid})
    call(c, "DeleteLiveSnapshotRule", {"DomainName": PUSH, "AppName": "live", "StreamName": "s"})

    # At most 50 templates.
    have = len(call(c, "DescribeLiveSnapshotTemplates", {}).Templates)
    extra_ids = [call(c, "CreateLiveSnapshotTemplate", {**SNAPSHOT, "TemplateName": f"fill{i}"}).TemplateId
                 for i in range(50 - have)]
    assert error_code(c, "CreateLiveSnapshotTemplate", SNAPSHOT) == "InternalError.ConfOutLimit"
    for i in extra_ids + [d]:
        call(c, "DeleteLiveSnapshotTemplate", {"TemplateId": i})
    assert call(c, "DescribeLiveSnapshotTemplates", {}).Templates == []
