#!/usr/bin/env bash
# Side-by-side benchmark of ferrocast and nginx-rtmp with the same synthetic stream and the same players.
# Not part of the test suite (it takes minutes and measures, it does not assert). Usage:
#   scripts/bench.sh                       # 400 viewers of a 2 Mbps stream, 20 s per run
#   VIEWERS=1600 KBPS=500 scripts/bench.sh # the issue's reference load
# Servers are pinned to CPU 0 and the load generator to CPU 1 (taskset), so "cpu" is the server's share of one
# core. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${VIEWERS:-400}
KBPS=${KBPS:-2000}
DURATION=${DURATION:-20}
RATE=${RATE:-400}
MERGE_MS=${MERGE_MS:-350}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$(mktemp -d /tmp/ferrocast-bench.XXXXXX)}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1; }
if ! [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || ! need nginx; then
  echo "== installing nginx-light and libnginx-mod-rtmp"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-rtmp
fi

echo "== building release binaries"
cargo build --release -p ferrocast-server -p ferrocast-bench
FERROCAST="$TARGET_DIR/release/ferrocast"
BENCH="$TARGET_DIR/release/ferrocast-bench"
ulimit -n 65536 2>/dev/null || true

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_ferrocast() { # $1 = merge window ms
  FERROCAST_RTMP_LISTEN=127.0.0.1:19350 FERROCAST_HTTP_LISTEN=127.0.0.1:18080 \
  FERROCAST_STORAGE_DATA_DIR="$OUT/data" FERROCAST_PLAY_MERGE_WINDOW_MS="$1" FERROCAST_LOG_LEVEL=warn \
    taskset -c 0 "$FERROCAST" >"$OUT/ferrocast-$1.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && return; sleep 0.1; done
  echo "ferrocast did not start"; cat "$OUT/ferrocast-$1.log"; exit 1
}

start_nginx() {
  mkdir -p "$OUT/nginx"
  cat >"$OUT/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 65536; }
rtmp { server { listen 127.0.0.1:19351; chunk_size 4096; application live { live on; } } }
CONF
  taskset -c 0 nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" >"$OUT/nginx/stdout.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  sleep 1
}

run() { # $1 label, $2 publish url, $3 play url
  taskset -c 1 "$BENCH" publish --url "$2" --kbps "$KBPS" --duration $((DURATION + 8)) >"$OUT/$1-publish.log" 2>&1 &
  local pub=$!; PIDS+=("$pub")
  sleep 4  # let a GOP or two build up
  taskset -c 1 "$BENCH" play --url "$3" --clients "$VIEWERS" --rate "$RATE" --duration "$DURATION" \
    --expect-kbps "$KBPS" --pid "$SERVER_PID" --label "$1" | tee "$OUT/$1.log"
  kill "$pub" 2>/dev/null || true; wait "$pub" 2>/dev/null || true
}

echo "== ferrocast, merge window 0 (every frame written at once)"
start_ferrocast 0
run ferrocast-rtmp rtmp://127.0.0.1:19350/live/bench rtmp://127.0.0.1:19350/live/bench
run ferrocast-flv rtmp://127.0.0.1:19350/live/bench2 http://127.0.0.1:18080/live/bench2.flv
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo "== ferrocast, merge window ${MERGE_MS} ms"
start_ferrocast "$MERGE_MS"
run "ferrocast-rtmp-mw$MERGE_MS" rtmp://127.0.0.1:19350/live/bench rtmp://127.0.0.1:19350/live/bench
run "ferrocast-flv-mw$MERGE_MS" rtmp://127.0.0.1:19350/live/bench2 http://127.0.0.1:18080/live/bench2.flv
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo "== nginx-rtmp (1 worker)"
start_nginx
run nginx-rtmp rtmp://127.0.0.1:19351/live/bench rtmp://127.0.0.1:19351/live/bench
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo "== summaries ($OUT)"
grep -h SUMMARY "$OUT"/*.log
