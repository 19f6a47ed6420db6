#!/usr/bin/env bash
# Recording under load: STREAMS streams pushed at once, first only played, then also recorded (FLV + MP4 + HLS
# by default) by a record rule, each with one HTTP-FLV viewer that reports whether it stays real time. The
# difference between the two runs is the cost of recording. Not part of the test suite. Usage:
#   scripts/record_bench.sh                            # 20 streams of 1 Mbps, 60 s per run
#   STREAMS=40 KBPS=2000 FORMATS=flv,mp4 scripts/record_bench.sh
# The server is pinned to CPU 0, publishers and players to CPU 1 (taskset): "cpu" is the server's share of one core.
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-20}
KBPS=${KBPS:-1000}
DURATION=${DURATION:-60}
FORMATS=${FORMATS:-flv,mp4,hls}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$(mktemp -d /tmp/ferrocast-record-bench.XXXXXX)}
mkdir -p "$OUT"
SECRET_ID=AKIDferrocastBENCH000000000000000000000
SECRET_KEY=ferrocastBenchSecret0000000000000

echo "== building release binaries"
cargo build --release -p ferrocast-server -p ferrocast-bench
FERROCAST="$TARGET_DIR/release/ferrocast"
BENCH="$TARGET_DIR/release/ferrocast-bench"
[ -x .venv/bin/python ] || { echo "run scripts/test.sh once first: it makes .venv with the API SDK"; exit 1; }
ulimit -n 65536 2>/dev/null || true

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

FERROCAST_RTMP_LISTEN=127.0.0.1:19350 FERROCAST_HTTP_LISTEN=127.0.0.1:18080 \
FERROCAST_STORAGE_DATA_DIR="$OUT/data" FERROCAST_LOG_LEVEL=warn FERROCAST_SRT_ENABLED=false \
FERROCAST_WEBRTC_ENABLED=false FERROCAST_HUB_PUBLISHER_GRACE_MS=500 FERROCAST_API_SECRET_ID=$SECRET_ID FERROCAST_API_SECRET_KEY=$SECRET_KEY \
  taskset -c 0 "$FERROCAST" >"$OUT/ferrocast.log" 2>&1 &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done

run() { # $1 label
  local pubs=()
  for i in $(seq 0 $((STREAMS - 1))); do
    taskset -c 1 "$BENCH" publish --url "rtmp://127.0.0.1:19350/live/rec$i" --kbps "$KBPS" --gop 30 \
      --duration $((DURATION + 8)) >"$OUT/$1-publish-$i.log" 2>&1 &
    pubs+=($!); PIDS+=($!)
  done
  sleep 4
  taskset -c 1 "$BENCH" play --url "http://127.0.0.1:18080/live/rec{i}.flv" --clients "$STREAMS" \
    --duration "$DURATION" --interval 5 --expect-kbps "$KBPS" --pid "$SERVER_PID" --label "$1" | tee "$OUT/$1.log"
  for p in "${pubs[@]}"; do wait "$p" 2>/dev/null || true; done
  sleep 3
}

echo "== $STREAMS streams, live only"
run live-only

echo "== $STREAMS streams, recorded as $FORMATS"
.venv/bin/python - "$FORMATS" <<PY
import json, sys
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.live.v20180801 import live_client, models

profile = ClientProfile(httpProfile=HttpProfile(endpoint="127.0.0.1:18080", protocol="http"))
c = live_client.LiveClient(credential.Credential("$SECRET_ID", "$SECRET_KEY"), "ap-guangzhou", profile)
params = {"TemplateName": "bench"}
for f in sys.argv[1].split(","):
    params[f.capitalize() + "Param"] = {"Enable": 1, "RecordInterval": 1800}
req = models.CreateLiveRecordTemplateRequest(); req.from_json_string(json.dumps(params))
tid = c.CreateLiveRecordTemplate(req).TemplateId
req = models.CreateLiveRecordRuleRequest()
req.from_json_string(json.dumps({"DomainName": "localhost", "AppName": "live", "TemplateId": tid}))
c.CreateLiveRecordRule(req)
print(f"record template {tid} bound to localhost/live")
PY
run recording
spooled() { find "$OUT/data/spool/rec" -type f ! -name session.json | wc -l; }
for _ in $(seq 120); do [ "$(spooled)" -eq 0 ] && break; sleep 0.5; done

echo "== recorded files ($OUT/data/records)"
find "$OUT/data/records" -type f | sed 's/.*\.//' | sort | uniq -c
du -sh "$OUT/data/records"
echo "left in the spool: $(spooled) files"
grep -E "WARN|ERROR" "$OUT/ferrocast.log" | head -5 || true
echo "== summaries ($OUT)"
grep -h SUMMARY "$OUT"/live-only.log "$OUT"/recording.log
