"""Push start (event 1) / interruption (event 0) callbacks: templates and rules through the official SDK, delivery
to a local receiver, retries, a durable outbox across a restart, and DescribeCallbackRecordsList (issue 3 item 6)."""

from __future__ import annotations

import hashlib
import ssl
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Server, free_port, publish, run, tool, wait_until
from test_api import PUSH, SECRET_ID, SECRET_KEY, call, client, error_code

KEY = "cbkey123"


class Receiver:
    """Records every POST; answers with the next status of `statuses` (then 200)."""

    def __init__(self, port: int | None = None, statuses: list[int] | None = None,
                 tls: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.tls = tls  # (certificate chain PEM, key PEM): serve https
        self.posts: list[dict] = []
        self.statuses = list(statuses or [])
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.posts.append({"path": self.path, "status": status,
                                        "type": self.headers.get("Content-Type"), "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def events(self, path: str, event_type: int, status: int | None = 200) -> list[dict]:
        with self.lock:
            return [p["body"] for p in self.posts
                    if p["path"] == path and p["body"].get("event_type") == event_type
                    and (status is None or p["status"] == status)]


ENV = {
    "FERROCAST_API_SECRET_ID": SECRET_ID,
    "FERROCAST_API_SECRET_KEY": SECRET_KEY,
    "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    "FERROCAST_CALLBACKS_RETRY_INTERVAL_MS": "300",
    "FERROCAST_CALLBACKS_TIMEOUT_MS": "2000",
    "FERROCAST_CALLBACKS_APPID": "12345678",
}


def setup_callbacks(server, begin: str, end: str, app: str = "live") -> int:
    c = client(server)
    r = call(c, "CreateLiveCallbackTemplate", {"TemplateName": f"t_{free_port()}", "StreamBeginNotifyUrl": begin,
                                               "StreamEndNotifyUrl": end, "CallbackKey": KEY})
    call(c, "CreateLiveCallbackRule", {"DomainName": PUSH, "AppName": app, "TemplateId": r.TemplateId})
    return r.TemplateId


def check_sign(body: dict) -> None:
    assert body["sign"] == hashlib.md5(f"{KEY}{body['t']}".encode()).hexdigest()
    assert body["t"] >= time.time() + 500


def test_template_and_rule_actions(server_factory):
    server = server_factory(ENV)
    c = client(server)
    assert error_code(c, "CreateLiveCallbackTemplate", {"TemplateName": "none"}) == "InvalidParameter"
    tid = call(c, "CreateLiveCallbackTemplate", {"TemplateName": "a-b_c", "Description": "d",
                                                 "StreamBeginNotifyUrl": "http://x.example/b",
                                                 "RecordExceptionLevels": ["error"], "CallbackKey": "k"}).TemplateId
    call(c, "ModifyLiveCallbackTemplate", {"TemplateId": tid, "StreamEndNotifyUrl": "http://x.example/e"})
    t = call(c, "DescribeLiveCallbackTemplate", {"TemplateId": tid}).Template
    assert (t.TemplateName, t.Description, t.StreamBeginNotifyUrl, t.StreamEndNotifyUrl, t.CallbackKey,
            t.RecordExceptionLevels) == ("a-b_c", "d", "http://x.example/b", "http://x.example/e", "k", ["error"])
    assert [x.TemplateId for x in call(c, "DescribeLiveCallbackTemplates", {}).Templates] == [tid]
    call(c, "CreateLiveCallbackRule", {"DomainName": PUSH, "AppName": "live", "TemplateId": tid})
    rules = call(c, "DescribeLiveCallbackRules", {}).Rules
    assert [(r.DomainName, r.AppName, r.TemplateId) for r in rules] == [(PUSH, "live", tid)]
    assert error_code(c, "DeleteLiveCallbackTemplate", {"TemplateId": tid}) == "FailedOperation.ConfInUsed"
    assert error_code(c, "CreateLiveCallbackRule", {"DomainName": PUSH, "AppName": "x", "TemplateId": 999}) \
        == "InvalidParameter.ConfNotFound"
    call(c, "DeleteLiveCallbackRule", {"DomainName": PUSH, "AppName": "live"})
    assert error_code(c, "DeleteLiveCallbackRule", {"DomainName": PUSH, "AppName": "live"}) \
        == "FailedOperation.NotFound"
    call(c, "DeleteLiveCallbackTemplate", {"TemplateId": tid})
    assert error_code(c, "DescribeLiveCallbackTemplate", {"TemplateId": tid}) == "InternalError.ConfNotFound"


def test_push_start_and_stop_are_delivered_with_retries(server_factory):
    rx = Receiver(statuses=[500]).start()  # the first POST (event 1) fails; the retry must arrive
    try:
        server = server_factory(ENV)
        setup_callbacks(server, rx.url("/begin"), rx.url("/end"))
        pub = publish(server.rtmp("cbstream") + "?stream_param=test", 3)
        wait_until(lambda: rx.events("/begin", 1), 15, what="event 1 delivered")
        assert rx.events("/begin", 1, status=500), "the first attempt answered 500"
        b = rx.events("/begin", 1)[0]
        assert {k: b[k] for k in ("app", "appid", "appname", "channel_id", "stream_id", "errcode", "errmsg",
                                  "event_type", "user_ip", "stream_param")} == {
            "app": PUSH, "appid": 12345678, "appname": "live", "channel_id": "cbstream", "stream_id": "cbstream",
            "errcode": 0, "errmsg": "ok", "event_type": 1, "user_ip": "127.0.0.1", "stream_param": "stream_param=test"}
        assert set(b) >= {"event_time", "sequence", "node", "set_id", "width", "height", "idc_id", "t", "sign"}
        assert "push_duration" not in b
        # The publisher sends its video header right after `publish`; event 1 waits for it.
        assert (b["width"], b["height"]) == (640, 360), b
        check_sign(b)
        pub.wait(30)
        wait_until(lambda: rx.events("/end", 0), 15, what="event 0 delivered")
        e = rx.events("/end", 0)[0]
        assert e["sequence"] == b["sequence"] and (e["width"], e["height"]) == (640, 360)
        assert e["errcode"] == 1 and e["errmsg"] == "The push client actively stopped the push"
        assert isinstance(e["push_duration"], str) and int(e["push_duration"]) > 1000
        check_sign(e)

        c = client(server)
        now = datetime.now(timezone.utc)
        q = {"StartTime": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "EndTime": (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "StreamName": "cbstream", "PageNum": 1, "PageSize": 100}
        r = call(c, "DescribeCallbackRecordsList", q)
        codes = sorted((x.EventType, x.ResultCode) for x in r.DataInfoList)
        assert codes == [(0, 0), (1, 0), (1, 500)], codes
        assert r.TotalNum == 3
        assert json.loads(r.DataInfoList[0].Request)["stream_id"] == "cbstream"
        r = call(c, "DescribeCallbackRecordsList", {**q, "EventType": 1, "ResultCode": 0})
        assert [(x.EventType, x.ResultCode) for x in r.DataInfoList] == [(1, 0)]
    finally:
        rx.stop()


def test_outbox_survives_a_restart(server_factory):
    rx = Receiver()  # not listening yet: every attempt fails
    try:
        server = server_factory(ENV)
        setup_callbacks(server, rx.url("/begin"), rx.url("/end"))
        pub = publish(server.rtmp("durable"), 30)
        time.sleep(3)
        server.kill()  # a crash: the push is still open, event 1 undelivered
        pub.kill()
        rx.start()
        again = Server(server.workdir, env=ENV).start()
        try:
            wait_until(lambda: rx.events("/begin", 1), 15, what="event 1 delivered after the restart")
            wait_until(lambda: rx.events("/end", 0), 15, what="event 0 for the push open at the crash")
            b, e = rx.events("/begin", 1)[0], rx.events("/end", 0)[0]
            assert b["stream_id"] == "durable" and e["sequence"] == b["sequence"]
            assert e["errcode"] == 5
            check_sign(b)
        finally:
            again.stop()
    finally:
        rx.stop()


def make_ca(d, name: str) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, leaf.pem, leaf.key)."""
    ca, ca_key = str(d / f"{name}-ca.pem"), str(d / f"{name}-ca.key")
    leaf, leaf_key, csr, ext = (str(d / f"{name}-{x}") for x in ("leaf.pem", "leaf.key", "leaf.csr", "ext.cnf"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run([tool("openssl"), "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", f"/CN={name} test CA"], check=True)
    run([tool("openssl"), "req", *ec, "-keyout", leaf_key, "-out", csr, "-subj", "/CN=127.0.0.1"], check=True)
    (d / f"{name}-ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run([tool("openssl"), "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", leaf, "-days", "2", "-extfile", ext], check=True)
    return ca, leaf, leaf_key


def test_https_receivers_are_verified(server_factory, tmp_path):
    trusted_ca, leaf, key = make_ca(tmp_path, "trusted")
    _, other_leaf, other_key = make_ca(tmp_path, "stranger")
    good = Receiver(tls=(leaf, key)).start()
    bad = Receiver(tls=(other_leaf, other_key)).start()
    try:
        server = server_factory({**ENV, "FERROCAST_CALLBACKS_CA_FILE": trusted_ca})
        setup_callbacks(server, good.url("/begin"), good.url("/end"))
        setup_callbacks(server, bad.url("/begin"), bad.url("/end"), app="other")
        pubs = [publish(server.rtmp("tls1"), 2), publish(server.rtmp("tls2", app="other"), 2)]
        for p in pubs:
            p.wait(30)
        wait_until(lambda: good.events("/end", 0), 15, what="event 0 delivered over https")
        b = good.events("/begin", 1)[0]
        assert b["stream_id"] == "tls1" and good.posts[0]["type"] == "application/json"
        check_sign(b)
        # A receiver whose certificate no trusted CA signed gets nothing; the attempt is recorded as an error.
        c = client(server)
        now = datetime.now(timezone.utc)
        q = {"StartTime": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "EndTime": (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "StreamName": "tls2", "PageNum": 1, "PageSize": 100}
        wait_until(lambda: call(c, "DescribeCallbackRecordsList", q).TotalNum >= 2, 15, what="failed attempts")
        assert not bad.posts
        assert {x.ResultCode for x in call(c, "DescribeCallbackRecordsList", q).DataInfoList} == {-1}
    finally:
        good.stop()
        bad.stop()


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
