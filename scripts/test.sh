#!/usr/bin/env bash
# The test command: installs what the tests need, builds once (debug), runs the unit tests and then the black-box
# tests (tests/, pytest) against target/debug/ferrocast. Exits non-zero on any failure.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k rtmps        # extra arguments go to pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS

step() { printf '\n==== [%4ds] %s ====\n' "$((SECONDS - START))" "$*"; }
die() { printf '\nscripts/test.sh: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install Debian packages"
    SUDO=(sudo)
fi

step "Debian packages"
DEB_PACKAGES=(ffmpeg srt-tools libopus-dev pkg-config iproute2 openssl nginx-light libnginx-mod-rtmp postgresql chromium curl xz-utils ca-certificates)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v timeout >/dev/null 2>&1 || missing+=(coreutils)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all present: ${DEB_PACKAGES[*]}"
fi
# nginx-light's package may start nginx on :80; the tests do not need it running.
for tool in ffmpeg ffprobe openssl chromium; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after the install step"
done

step "Python venv (.venv) and tests/requirements.txt"
if ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    rm -rf .venv
    python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" > "$stamp"
else
    echo "requirements already installed"
fi
.venv/bin/python - <<'PY'
import imageio_ffmpeg, os, stat
p = os.path.join(os.path.dirname(imageio_ffmpeg.__file__), "binaries", "ffmpeg-linux-x86_64-v9.0.2")
if not os.path.isfile(p):
    raise SystemExit(f"ffmpeg 9.0.2 not found at {p}")
os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
print("ffmpeg 9:", p)
PY

step "Browser harness: Node.js >= 20, npm ci in tests/browser (playwright-core, hls.js, dash.js)"
# Debian 12's nodejs is 18, too old for the pinned playwright-core and dash.js: use the system's Node when it is
# new enough, else the official Node 20 build, cached outside the repository.
node_ok() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; }
if ! node_ok; then
    NODE_VERSION=v20.19.5
    NODE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ferrocast/node-$NODE_VERSION-linux-x64"
    if [ ! -x "$NODE_DIR/bin/node" ]; then
        mkdir -p "$(dirname "$NODE_DIR")"
        curl -fsSL "https://nodejs.org/dist/$NODE_VERSION/node-$NODE_VERSION-linux-x64.tar.xz" \
            | tar -xJ -C "$(dirname "$NODE_DIR")"
    fi
    export PATH="$NODE_DIR/bin:$PATH"
fi
node_ok || die "Node.js >= 20 with npm is needed for the browser tests (found $(node --version 2>/dev/null || echo none))"
echo "node $(node --version), npm $(npm --version 2>/dev/null)"
lock=tests/browser/node_modules/.package-lock.sha256
want="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$lock" 2>/dev/null || true)" != "$want" ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
    echo "$want" > "$lock"
else
    echo "tests/browser/node_modules up to date"
fi
# The browser tests fail rather than skip when something is missing.
export FERROCAST_REQUIRE_BROWSER=1

step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup)"
cargo --version

step "cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check || die "code is not formatted: run cargo fmt --all"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins (debug)"
cargo build --workspace --bins

step "cargo test --workspace"
# The storage crate's S3 tests run against moto and SeaweedFS from tests/requirements.txt.
export FERROCAST_TEST_MOTO="$ROOT/.venv/bin/moto_server" FERROCAST_TEST_WEED="$ROOT/.venv/bin/weed"
cargo test --workspace

step "store tests on PostgreSQL"
# The store's own tests run on SQLite above and again here on PostgreSQL (Debian's cluster, started if needed).
# One thread: they share one database.
pg_as() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
PG_VERSION=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$PG_VERSION" ] || die "postgresql is installed but has no cluster under /etc/postgresql"
"${SUDO[@]}" pg_ctlcluster "$PG_VERSION" main start 2>/dev/null || true
for _ in $(seq 50); do pg_as "psql -qAtc 'select 1'" >/dev/null 2>&1 && break; sleep 0.2; done
pg_as "psql -qAtc \"select 1 from pg_roles where rolname='ferrocast'\"" | grep -q 1 \
    || pg_as "psql -qc \"create role ferrocast login password 'ferrocast'\""
pg_as "psql -qAtc \"select 1 from pg_database where datname='ferrocast_test'\"" | grep -q 1 \
    || pg_as "psql -qc 'create database ferrocast_test owner ferrocast'"
FERROCAST_TEST_PG_URL=postgres://ferrocast:ferrocast@127.0.0.1:5432/ferrocast_test \
    cargo test -p ferrocast-control store -- --test-threads=1

step "pytest tests (black-box, against target/debug/ferrocast)"
export FERROCAST_BIN="$ROOT/target/debug/ferrocast"
export PYTHONDONTWRITEBYTECODE=1
[ -x "$FERROCAST_BIN" ] || die "$FERROCAST_BIN was not built"
rc=0
timeout -s KILL 1500 .venv/bin/python -m pytest tests -v -rfEs --durations=15 -p no:cacheprovider "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 5 ] && echo "pytest collected no tests" >&2
    [ "$rc" -eq 137 ] && echo "pytest was killed after 1500 s" >&2
    die "black-box tests failed (pytest exit $rc)"
fi

step "all tests passed in $((SECONDS - START))s"
