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
# shellcheck source=benches/lib.sh
source benches/lib.sh

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
ulimit -n "$(ulimit -Hn)"
if [[ $QUICK == 1 ]]; then STREAMS=${STREAMS:-100}; DURATION=${DURATION:-5}
else STREAMS=${STREAMS:-1000}; DURATION=${DURATION:-60}; fi
RATE=${RATE:-10}; WORKERS=${WORKERS:-2}

build_soak sse

BPORT=$(free_port); GPORT=$(free_port)
DIR=$(mktemp -d /tmp/ringway-sse-soak.XXXXXX)
trap stop_started EXIT

start_soak "$DIR" "$BPORT" "$GPORT" "$WORKERS" 1
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
