"""The management API, black-box: the real binary driven by the official Python SDK (tencentcloud-sdk-python-live)
with only the endpoint changed; TC3-HMAC-SHA256 (POST and GET) and the legacy HmacSHA1/HmacSHA256 sign methods,
the documented error paths, and push authentication (txSecret/txTime) enforced on RTMP publish."""

from __future__ import annotations

import hashlib
import json
import time
from unittest import mock

import pytest
import requests

from conftest import check_media, publish, record, run, tool, wait_until

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.live.v20180801 import live_client, models

SECRET_ID = "AKIDferrocastTEST00000000000000000000"
SECRET_KEY = "ferrocastSecretKeyTEST0000000000"
PUSH = "push.test.com"
PLAY = "play.test.com"

SIGN_METHODS = [("TC3-HMAC-SHA256", "POST"), ("TC3-HMAC-SHA256", "GET"), ("HmacSHA256", "POST"),
                ("HmacSHA1", "GET")]


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    })


def client(server, sign_method: str = "TC3-HMAC-SHA256", req_method: str = "POST", secret_id: str = SECRET_ID,
           secret_key: str = SECRET_KEY) -> live_client.LiveClient:
    http = HttpProfile(endpoint=f"127.0.0.1:{server.http_port}", protocol="http", reqMethod=req_method, reqTimeout=10)
    profile = ClientProfile(signMethod=sign_method, httpProfile=http, language="en-US")
    return live_client.LiveClient(credential.Credential(secret_id, secret_key), "ap-guangzhou", profile)


def call(c: live_client.LiveClient, action: str, params: dict):
    req = getattr(models, f"{action}Request")()
    req.from_json_string(json.dumps(params))
    return getattr(c, action)(req)


def error_code(c, action: str, params: dict) -> str:
    with pytest.raises(TencentCloudSDKException) as e:
        call(c, action, params)
    assert e.value.get_request_id(), f"{action}: the error has no RequestId"
    return e.value.get_code()


def test_domains_lifecycle_with_every_sign_method(server):
    for i, (sign, method) in enumerate(SIGN_METHODS):
        c = client(server, sign, method)
        name = f"d{i}.push.example.com"
        r = call(c, "AddLiveDomain", {"DomainName": name, "DomainType": 0, "PlayType": 1})
        assert r.RequestId and len(r.RequestId) == 36, r.RequestId
        info = call(c, "DescribeLiveDomain", {"DomainName": name}).DomainInfo
        assert (info.Name, info.Type, info.Status, info.PlayType) == (name, 0, 1, 1), (sign, method)
        assert len(info.CreateTime) == 19, info.CreateTime
        call(c, "ForbidLiveDomain", {"DomainName": name})
        assert call(c, "DescribeLiveDomain", {"DomainName": name}).DomainInfo.Status == 0
        call(c, "EnableLiveDomain", {"DomainName": name})
        assert call(c, "DescribeLiveDomain", {"DomainName": name}).DomainInfo.Status == 1
        # A new push domain gets push authentication enabled with a generated key.
        key = call(c, "DescribeLivePushAuthKey", {"DomainName": name}).PushAuthKeyInfo
        assert (key.DomainName, key.Enable, len(key.MasterAuthKey)) == (name, 1, 32)
        call(c, "DeleteLiveDomain", {"DomainName": name, "DomainType": 0})
        assert error_code(c, "DescribeLiveDomain", {"DomainName": name}).startswith("ResourceNotFound")


def test_describe_domains_filters_and_pages(server):
    c = client(server)
    for n in range(12):
        call(c, "AddLiveDomain", {"DomainName": f"p{n:02d}.list.example.com", "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": "play.list.example.com", "DomainType": 1, "PlayType": 2,
                              "IsDelayLive": 0})
    r = call(c, "DescribeLiveDomains", {"DomainPrefix": "p", "DomainType": 0, "PageSize": 10, "PageNum": 2})
    names = [d.Name for d in r.DomainList]
    assert r.AllCount >= 12 and len(names) == r.AllCount - 10, (r.AllCount, names)
    assert all(d.Type == 0 for d in r.DomainList)
    r = call(c, "DescribeLiveDomains", {"DomainType": 1, "PlayType": 2})
    assert [d.Name for d in r.DomainList] == ["play.list.example.com"]
    assert r.CreateLimitCount is not None and r.PlayTypeCount is not None
    assert error_code(c, "DescribeLiveDomains", {"PageSize": 5}) == "InvalidParameterValue"
    assert error_code(c, "DescribeLiveDomains", {"PageNum": 0}) == "InvalidParameterValue"
    call(c, "ModifyLivePlayDomain", {"DomainName": "play.list.example.com", "PlayType": 3})
    assert call(c, "DescribeLiveDomain", {"DomainName": "play.list.example.com"}).DomainInfo.PlayType == 3
    for n in range(12):
        call(c, "DeleteLiveDomain", {"DomainName": f"p{n:02d}.list.example.com", "DomainType": 0})
    call(c, "DeleteLiveDomain", {"DomainName": "play.list.example.com", "DomainType": 1})


def test_keys_and_referer(server):
    c = client(server, "HmacSHA256", "POST")
    call(c, "AddLiveDomain", {"DomainName": "k.push.example.com", "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": "k.play.example.com", "DomainType": 1})
    try:
        call(c, "ModifyLivePushAuthKey", {"DomainName": "k.push.example.com", "Enable": 1, "MasterAuthKey": "m1",
                                          "BackupAuthKey": "b1", "AuthDelta": 60})
        # "Left empty → not modified".
        call(c, "ModifyLivePushAuthKey", {"DomainName": "k.push.example.com", "MasterAuthKey": ""})
        k = call(c, "DescribeLivePushAuthKey", {"DomainName": "k.push.example.com"}).PushAuthKeyInfo
        assert (k.Enable, k.MasterAuthKey, k.BackupAuthKey, k.AuthDelta) == (1, "m1", "b1", 60)

        p = call(c, "DescribeLivePlayAuthKey", {"DomainName": "k.play.example.com"}).PlayAuthKeyInfo
        assert (p.Enable, p.AuthKey) == (0, "")
        call(c, "ModifyLivePlayAuthKey", {"DomainName": "k.play.example.com", "Enable": 1, "AuthKey": "pk",
                                          "AuthBackKey": "pb", "AuthDelta": 30})
        p = call(c, "DescribeLivePlayAuthKey", {"DomainName": "k.play.example.com"}).PlayAuthKeyInfo
        assert (p.DomainName, p.Enable, p.AuthKey, p.AuthBackKey, p.AuthDelta) == \
            ("k.play.example.com", 1, "pk", "pb", 30)

        call(c, "ModifyLiveDomainReferer", {"DomainName": "k.play.example.com", "Enable": 1, "Type": 1,
                                            "AllowEmpty": 0, "Rules": "a.com;*.b.com"})
        r = call(c, "DescribeLiveDomainReferer", {"DomainName": "k.play.example.com"}).RefererAuthConfig
        assert (r.DomainName, r.Enable, r.Type, r.AllowEmpty, r.Rules) == ("k.play.example.com", 1, 1, 0, "a.com;*.b.com")

        # Error paths: the key actions check the domain type; values are validated.
        assert error_code(c, "DescribeLivePushAuthKey", {"DomainName": "k.play.example.com"}) == \
            "ResourceNotFound.PushDomainNoRecord"
        assert error_code(c, "DescribeLivePlayAuthKey", {"DomainName": "k.push.example.com"}) == \
            "ResourceNotFound.PlayDomainNoRecord"
        assert error_code(c, "ModifyLivePushAuthKey", {"DomainName": "k.push.example.com", "Enable": 7}) == \
            "InvalidParameterValue"
        assert error_code(c, "ModifyLiveDomainReferer", {"DomainName": "k.play.example.com", "Enable": 1,
                                                         "Type": 1, "AllowEmpty": 0}) == "MissingParameter"
        assert error_code(c, "ModifyLiveDomainReferer", {"DomainName": "nope.example.com", "Enable": 1, "Type": 1,
                                                         "AllowEmpty": 0, "Rules": ""}).startswith("ResourceNotFound")
    finally:
        call(c, "DeleteLiveDomain", {"DomainName": "k.play.example.com", "DomainType": 1})
        call(c, "DeleteLiveDomain", {"DomainName": "k.push.example.com", "DomainType": 0})


def test_validation_errors(server):
    c = client(server)
    assert error_code(c, "AddLiveDomain", {"DomainType": 0}) == "MissingParameter"
    assert error_code(c, "AddLiveDomain", {"DomainName": "x.example.com"}) == "MissingParameter"
    assert error_code(c, "AddLiveDomain", {"DomainName": "bad_domain!", "DomainType": 0}) == \
        "InvalidParameter.DomainFormatError"
    assert error_code(c, "AddLiveDomain", {"DomainName": "x.example.com", "DomainType": 5}) == "InvalidParameterValue"
    call(c, "AddLiveDomain", {"DomainName": "dup.example.com", "DomainType": 0})
    assert error_code(c, "AddLiveDomain", {"DomainName": "dup.example.com", "DomainType": 0}) == \
        "InvalidParameter.DomainAlreadyExist"
    assert error_code(c, "DeleteLiveDomain", {"DomainName": "dup.example.com", "DomainType": 1}) == \
        "ResourceNotFound.DomainNotExist"
    call(c, "DeleteLiveDomain", {"DomainName": "dup.example.com", "DomainType": 0})
    assert error_code(c, "DescribeLiveDomain", {}) == "MissingParameter"
    assert error_code(c, "EnableLiveDomain", {"DomainName": "nope.example.com"}).startswith("ResourceNotFound")
    assert error_code(c, "ForbidLiveDomain", {"DomainName": "nope.example.com"}).startswith("ResourceNotFound")
    assert error_code(c, "ModifyLivePlayDomain", {"DomainName": "nope.example.com", "PlayType": 1}) == \
        "ResourceNotFound.DomainNotExist"
    # Unknown action, through the SDK's generic call.
    with pytest.raises(TencentCloudSDKException) as e:
        c.call_json("NoSuchAction", {})
    assert e.value.get_code() == "InvalidAction"


@pytest.mark.parametrize("sign,method", SIGN_METHODS)
def test_auth_failures(server, sign, method):
    bad_key = client(server, sign, method, secret_key="ferrocastWRONGKEY000000000000000")
    assert error_code(bad_key, "DescribeLiveDomains", {}) == "AuthFailure.SignatureFailure"
    unknown = client(server, sign, method, secret_id="AKIDunknown00000000000000000000000000")
    assert error_code(unknown, "DescribeLiveDomains", {}) == "AuthFailure.SecretIdNotFound"
    good = client(server, sign, method)
    with mock.patch("tencentcloud.common.abstract_client.time.time", return_value=time.time() - 301):
        code = error_code(good, "DescribeLiveDomains", {})
    assert code == "AuthFailure.SignatureExpire"
    assert call(good, "DescribeLiveDomains", {}).RequestId


def test_wire_format_of_errors(server):
    """Errors are HTTP 200 with Content-Type exactly application/json and a RequestId."""
    r = requests.post(server.http("/"), data="{}", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()["Response"]
    assert body["Error"]["Code"] == "AuthFailure.InvalidAuthorization" and body["RequestId"]
    r = requests.get(server.http("/?Action=DescribeLiveDomains&Signature=x"), timeout=5)
    assert r.json()["Response"]["Error"]["Code"] == "MissingParameter"
    # The HTTP-FLV route is untouched.
    assert requests.get(server.flv("nosuchstream"), timeout=5).status_code == 404


def signed_rtmp(server, stream: str, key: str, expire_at: int) -> str:
    tx_time = f"{expire_at:08X}"
    secret = hashlib.md5(f"{key}{stream}{tx_time}".encode()).hexdigest()
    return f"{server.rtmp(stream)}?txSecret={secret}&txTime={tx_time}"


def refused(proc, server, stream: str) -> None:
    rc = proc.wait(20)
    assert rc is not None and rc != 0, f"ffmpeg should have been refused: rc={rc}\n{proc.tail()}"
    assert not server.is_live(stream)


def test_push_authentication_on_rtmp(server):
    """The server's default domain is the push domain, so rtmp://127.0.0.1/... publishes to it."""
    c = client(server)
    call(c, "AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    try:
        call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 1, "MasterAuthKey": "masterkey",
                                          "BackupAuthKey": "backupkey", "AuthDelta": 0})
        now = int(time.time())
        ok = publish(signed_rtmp(server, "good", "masterkey", now + 3600), 6, name="pub-good")
        server.wait_live("good")
        ok.kill()

        backup = publish(signed_rtmp(server, "bk", "backupkey", now + 3600), 6, name="pub-backup")
        server.wait_live("bk")
        backup.kill()

        refused(publish(signed_rtmp(server, "wrong", "otherkey", now + 3600), 6, name="pub-wrong"), server, "wrong")
        refused(publish(signed_rtmp(server, "old", "masterkey", now - 120), 6, name="pub-expired"), server, "old")
        refused(publish(server.rtmp("plain"), 6, name="pub-unsigned"), server, "plain")
        # A push to a domain that is not configured (tcUrl host) is refused once a push domain exists.
        tcurl = f"rtmp://other.test.com:{server.rtmp_port}/live"
        other = publish(server.rtmp("other"), 6, extra=["-rtmp_tcurl", tcurl], name="pub-unknown-domain")
        refused(other, server, "other")
        log = server.text()
        for reason in ["bad signature", "expired", "missing txSecret", "unknown domain other.test.com"]:
            assert f"publish refused: {reason}" in log, f"no refusal logged for {reason!r}"

        # Forbidding the domain refuses even a well-signed push; disabling auth opens it again.
        call(c, "ForbidLiveDomain", {"DomainName": PUSH})
        refused(publish(signed_rtmp(server, "forb", "masterkey", now + 3600), 6, name="pub-forbidden"), server,
                "forb")
        assert "publish refused: forbidden domain" in server.text()
        call(c, "EnableLiveDomain", {"DomainName": PUSH})
        call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 0})
        open_pub = publish(server.rtmp("open"), 6, name="pub-open")
        server.wait_live("open")
        open_pub.kill()
    finally:
        call(c, "DeleteLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    # With no domain left, the server is open again.
    again = publish(server.rtmp("again"), 6, name="pub-again")
    wait_until(lambda: server.is_live("again"), 15, 0.1, "open push after deleting the domain")
    again.kill()


def test_play_domain_plays_the_streams_of_its_push_domain(server, tmp_path):
    """Viewers address the play domain; streams live under the push domain it is bound to; the play domain's
    auth key is enforced on HTTP-FLV (txHost) and RTMP (tcUrl host)."""
    c = client(server)
    call(c, "AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": PLAY, "DomainType": 1})
    try:
        call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 0})
        call(c, "ModifyLivePlayAuthKey", {"DomainName": PLAY, "Enable": 1, "AuthKey": "playkey", "AuthDelta": 0})
        pub = publish(server.rtmp("pd"), 12, name="pub-play-domain")
        tx_time = f"{int(time.time()) + 3600:08X}"
        secret = hashlib.md5(f"playkey{'pd'}{tx_time}".encode()).hexdigest()
        signed = f"txSecret={secret}&txTime={tx_time}"

        def plays() -> bool:
            with requests.get(server.flv("pd") + f"?txHost={PLAY}&{signed}", stream=True, timeout=(2, 2)) as r:
                return r.status_code == 200
        wait_until(plays, 15, 0.1, "the stream to play through the play domain")

        unsigned = requests.get(server.flv("pd") + f"?txHost={PLAY}", timeout=10)
        assert unsigned.status_code == 403, unsigned.text
        with requests.get(server.flv("pd") + f"?txHost={PLAY}&{signed}", stream=True, timeout=10) as r:
            assert r.status_code == 200, r.text
            assert next(r.iter_content(3)) == b"FLV"

        tcurl = f"rtmp://{PLAY}:{server.rtmp_port}/live"
        viewer = record(f"{server.rtmp('pd')}?{signed}", tmp_path / "play-domain.flv",
                        extra_in=["-rtmp_tcurl", tcurl], name="rtmp-play-domain")
        assert pub.wait(30) == 0, pub.tail(20)
        assert viewer.wait(20) == 0, viewer.tail(20)
        check_media(tmp_path / "play-domain.flv", min_seconds=3.0)
    finally:
        call(c, "DeleteLiveDomain", {"DomainName": PLAY, "DomainType": 1})
        call(c, "DeleteLiveDomain", {"DomainName": PUSH, "DomainType": 0})


def _secret(key: str, stream: str, tx_time: str, sha256: bool = False) -> str:
    h = hashlib.sha256 if sha256 else hashlib.md5
    return h(f"{key}{stream}{tx_time}".encode()).hexdigest()


def test_signed_play_and_push_urls_with_ffmpeg(server, tmp_path):
    """ffmpeg plays over RTMP (tcUrl host = play domain) with valid, backup-key and SHA-256 URLs, and is refused
    with expired and wrong-key ones; a SHA-256 push URL is accepted too."""
    c = client(server)
    call(c, "AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": PLAY, "DomainType": 1})
    try:
        call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 1, "MasterAuthKey": "pushkey",
                                          "AuthDelta": 0})
        call(c, "ModifyLivePlayAuthKey", {"DomainName": PLAY, "Enable": 1, "AuthKey": "playmaster",
                                          "AuthBackKey": "playbackup", "AuthDelta": 0})
        now = int(time.time())
        future, past = f"{now + 3600:08X}", f"{now - 120:08X}"
        push_url = f"{server.rtmp('sig')}?txSecret={_secret('pushkey', 'sig', future, sha256=True)}&txTime={future}"
        pub = publish(push_url, 20, name="pub-sha256")

        def play(name: str, query: str) -> int:
            out = tmp_path / f"{name}.flv"
            r = run([tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error",
                     "-rtmp_tcurl", f"rtmp://{PLAY}:{server.rtmp_port}/live", "-i", f"{server.rtmp('sig')}?{query}",
                     "-t", "2", "-c", "copy", "-y", out], limit=30)
            return r.rc

        valid = f"txSecret={_secret('playmaster', 'sig', future)}&txTime={future}"
        wait_until(lambda: play("first", valid) == 0, 20, 0.5, "a signed RTMP play through the play domain")
        cases = {
            "md5": (valid, True),
            "backup": (f"txSecret={_secret('playbackup', 'sig', future)}&txTime={future}", True),
            "sha256": (f"txSecret={_secret('playmaster', 'sig', future, sha256=True)}&txTime={future}", True),
            "expired": (f"txSecret={_secret('playmaster', 'sig', past)}&txTime={past}", False),
            "wrongkey": (f"txSecret={_secret('otherkey', 'sig', future)}&txTime={future}", False),
            "unsigned": ("x=1", False),
        }
        for name, (query, ok) in cases.items():
            code = play(name, query)
            if ok:
                assert code == 0, f"{name}: a valid play URL was refused (ffmpeg exit {code})"
                check_media(tmp_path / f"{name}.flv", min_seconds=1.0)
            else:
                assert code != 0, f"{name}: an invalid play URL was accepted"
        log = server.text()
        for reason in ["expired", "bad signature", "missing txSecret"]:
            assert f"play refused: {reason}" in log, f"no play refusal logged for {reason!r}"
        pub.kill()
    finally:
        call(c, "DeleteLiveDomain", {"DomainName": PLAY, "DomainType": 1})
        call(c, "DeleteLiveDomain", {"DomainName": PUSH, "DomainType": 0})


def test_generated_credentials(server_factory):
    """Without [api] credentials a pair is generated, saved 0600 under the data dir and printed once."""
    s = server_factory()
    path = s.data_dir / "api-credentials.json"
    creds = json.loads(path.read_text())
    assert (path.stat().st_mode & 0o777) == 0o600
    assert creds["secret_id"] in s.text()
    c = client(s, secret_id=creds["secret_id"], secret_key=creds["secret_key"])
    assert call(c, "DescribeLiveDomains", {}).AllCount == 0
    s.stop()
    s.start()
    assert s.text().count(creds["secret_id"]) == 1, "printed once, on first start only"
    assert call(c, "DescribeLiveDomains", {}).AllCount == 0
