#!/usr/bin/env bash
# The HTTP benchmark (#15): wrk drives a stand-in OpenAI-compatible upstream directly,
# then Switchyard's /v1/chat/completions in front of that same stand-in, alternately,
# ROUNDS times in one run, and prints each figure and the gateway's ratio to direct.
#
#   cargo build --release --locked --bin switchyard --bin switchyard-bench
#   bench/http.sh                          # memory:// bus, SQLite
#   BUS=nats://127.0.0.1:14222 bench/http.sh
#
#   SOAK=600 bench/http.sh                 # soak: the gateway alone for 600 s, its RSS
#                                          # after 60 s and at the end
#
# Needs wrk (Debian: apt-get install wrk). Settings: BIN (the release binaries' folder,
# default $CARGO_TARGET_DIR/release or target/release), BUS, CONNS (32), THREADS (1),
# DURATION (10s), ROUNDS (3), DATABASE (default a fresh SQLite file), SOAK (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${BIN:-${CARGO_TARGET_DIR:-target}/release}" && pwd)"
BUS="${BUS:-memory://}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-1}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
UPSTREAM=127.0.0.1:18181
GATEWAY=127.0.0.1:18180
TOKEN="bench-admin-token-$(date +%s%N)"
LUA="$PWD/bench/chat.lua"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/switchyard-bench" --stand-in "$UPSTREAM" >"$work/stand-in.log" 2>&1 &
pids+=($!)
cat >"$work/bench.toml" <<TOML
[database]
url = "${DATABASE:-sqlite://$work/switchyard.db}"
[bus]
url = "$BUS"
prefix = "bench$$"
consumer = "bench$$"
[http]
listen = "$GATEWAY"
[admin]
token = "$TOKEN"
[[providers]]
name = "stand-in"
provider = "openai_compatible"
model = "stand-in"
base_url = "http://$UPSTREAM/v1"
rate_limit = { rpm = 1000000, burst = 100000, max_concurrency = 4096 }
TOML
(cd "$work" && exec "$BIN/switchyard" serve --config "$work/bench.toml") \
  >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://$GATEWAY/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://$GATEWAY/readyz" >/dev/null || { cat "$work/serve.log"; exit 1; }
KEY="$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" "http://$GATEWAY/v1/tenants/bench/keys" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')"
export KEY

# One wrk run: prints "<requests/s> <p99 ms>".
measure() {
  wrk -t"$THREADS" -c"$CONNS" -d"$1" --latency -s "$LUA" "http://$2/v1/chat/completions" |
    python3 -c '
import re, sys
out = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if errors:
    sys.exit(f"{errors.group(1)} failed responses:\n{out}")
print(f"{rps:.0f} {float(p99.group(1)) * scale:.2f}")'
}

rss() { ps -o rss= -p "${pids[1]}" | tr -d ' '; }
echo "gateway rss idle after start: $(rss) KiB"

if [ -n "${SOAK:-}" ]; then
  wrk -t"$THREADS" -c"$CONNS" -d"${SOAK}s" -s "$LUA" "http://$GATEWAY/v1/chat/completions" \
    >"$work/soak.txt" &
  soak=$!
  sleep 60
  at_1=$(rss)
  wait "$soak"
  at_end=$(rss)
  grep -E "Requests/sec|Non-2xx" "$work/soak.txt" || true
  python3 -c "print(f'soak ${SOAK} s: rss after 60 s {$at_1} KiB, at the end {$at_end} KiB: {$at_end / $at_1:.3f}x')"
  exit 0
fi

measure 2s "$UPSTREAM" >/dev/null
measure 2s "$GATEWAY" >/dev/null
echo "bus $BUS, wrk -t$THREADS -c$CONNS -d$DURATION"
for round in $(seq 1 "$ROUNDS"); do
  read -r d_rps d_p99 < <(measure "$DURATION" "$UPSTREAM")
  read -r g_rps g_p99 < <(measure "$DURATION" "$GATEWAY")
  python3 -c "print(f'round $round: direct $d_rps rps p99 $d_p99 ms; gateway $g_rps rps p99 $g_p99 ms; gateway/direct {$g_rps / $d_rps:.3f}')"
done
echo "gateway rss after the load: $(rss) KiB"
