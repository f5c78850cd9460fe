#!/usr/bin/env bash
# SSE soak: 1,000 concurrent event streams x 10 events/s, first straight from the built-in
# backend (baseline), then through ringway; every event must arrive in order. The latency ringway
# adds is the difference of the two runs' per-event latencies (arrival time minus the send
# time the backend embeds in each event).
#
#   benches/sse/run.sh           # 1000 streams x 60 s
#   benches/sse/run.sh --quick   # 100 streams x 5 s
#   STREAMS=2000 DURATION=30 benches/sse/run.sh
# Only the processes started here are stopped (by pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
ulimit -n "$(ulimit -Hn)"
if [[ $QUICK == 1 ]]; then STREAMS=${STREAMS:-100}; DURATION=${DURATION:-5}
else STREAMS=${STREAMS:-1000}; DURATION=${DURATION:-60}; fi
RATE=${RATE:-10}; WORKERS=${WORKERS:-2}

echo "building (release)..." >&2
BUILD_JSON=$(cargo build --release --bin ringway --bench sse --message-format=json 2>/dev/null)
exe() { python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==sys.argv[1] and m.get("executable"): print(m["executable"])' "$1" <<<"$BUILD_JSON" | tail -1; }
RINGWAY=$(exe ringway); CLIENT=$(exe sse)

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BPORT=$(free_port); GPORT=$(free_port)
DIR=$(mktemp -d /tmp/ringway-sse-soak.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$RINGWAY" backend --listen "127.0.0.1:$BPORT" --threads 1 >"$DIR/backend.log" 2>&1 &
PIDS+=($!)
cat >"$DIR/ringway.toml" <<TOML
workers = $WORKERS
host_check = "off"
[access_log]
enabled = false
[[listeners]]
address = "127.0.0.1:$GPORT"
max_connections = 20000
[[upstreams]]
name = "backend"
servers = ["127.0.0.1:$BPORT"]
[[routes]]
path_prefix = "/"
upstream = "backend"
TOML
"$RINGWAY" run -c "$DIR/ringway.toml" >"$DIR/gateway.log" 2>&1 &
GW=$!
PIDS+=($GW)
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$GPORT) 2>/dev/null && break
    sleep 0.1
done
echo "gateway pid $GW on :$GPORT (workers $WORKERS), backend :$BPORT; $(nproc) CPUs" >&2
ARGS=(--run --streams "$STREAMS" --rate "$RATE" --duration "$DURATION")
"$CLIENT" "${ARGS[@]}" --addr "127.0.0.1:$BPORT" --label direct | tee "$DIR/direct.txt"
"$CLIENT" "${ARGS[@]}" --addr "127.0.0.1:$GPORT" --label ringway --pid "$GW" | tee "$DIR/ringway.txt"
python3 - "$DIR/direct.txt" "$DIR/ringway.txt" <<'PY'
import re, sys
def lat(p):
    m = re.search(r"latency us: p50 (\d+) p90 (\d+) p99 (\d+)", open(p).read())
    return [int(x) for x in m.groups()]
d, g = lat(sys.argv[1]), lat(sys.argv[2])
print(f"added by ringway (us): p50 {g[0]-d[0]:+d}  p90 {g[1]-d[1]:+d}  p99 {g[2]-d[2]:+d}")
PY
echo "logs and reports in $DIR" >&2
