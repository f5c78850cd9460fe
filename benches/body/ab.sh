#!/usr/bin/env bash
# Side-by-side body relay cost of two ringway binaries (a change's before and after):
#
#   benches/body/ab.sh OLD_BINARY NEW_BINARY        # GET 16 MiB, relay splice, 3 rounds
#   RELAY=copy SIZE=1048576 ROUNDS=4 benches/body/ab.sh A B
#
# One built-in backend (from NEW), two gateways (1 worker each, the same route), and wrk -c8 for
# 4 s per binary per round, interleaved so both meet the same host. Prints MiB/s and the
# gateway's CPU (utime + stime from /proc) per MiB. Only the processes started here are stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
A=${1:?usage: ab.sh OLD_BINARY NEW_BINARY}; B=${2:?usage: ab.sh OLD_BINARY NEW_BINARY}
SIZE=${SIZE:-16777216}; ROUNDS=${ROUNDS:-3}; RELAY=${RELAY:-splice}
DIR=$(mktemp -d /tmp/ringway-body-ab.XXXXXX)
trap stop_started EXIT
BPORT=$(free_port)
"$B" backend --listen "127.0.0.1:$BPORT" >"$DIR/backend.log" 2>&1 &
PIDS+=($!)
declare -A PORT PID
for n in A B; do
    PORT[$n]=$(free_port)
    gateway_toml "${PORT[$n]}" "$BPORT" $'workers = 1\nhost_check = "off"' "" "" \
        "relay = \"$RELAY\"" >"$DIR/$n.toml"
    bin=$A; [[ $n == B ]] && bin=$B
    "$bin" run -c "$DIR/$n.toml" >"$DIR/$n.log" 2>&1 &
    PID[$n]=$!
    PIDS+=($!)
done
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
    for n in A B; do
        t0=$(ticks "${PID[$n]}")
        out=$(wrk -t1 -c8 -d4s "http://127.0.0.1:${PORT[$n]}/size/$SIZE")
        t1=$(ticks "${PID[$n]}")
        bytes=$(awk '/Transfer\/sec/ {v = $2; m = 1;
            if (v ~ /GB/) m = 1024 * 1024 * 1024; else if (v ~ /MB/) m = 1024 * 1024; else if (v ~ /KB/) m = 1024;
            sub(/[KMG]?B$/, "", v); print v * m * 4}' <<<"$out")
        awk -v r="$r" -v n="$n" -v b="$bytes" -v t="$((t1 - t0))" -v hz="$hz" 'BEGIN {
            mib = b / 1048576; printf "round %s %s: %7.1f MiB/s  cpu %.3f ms/MiB\n", r, n, mib / 4, 1000 * t / hz / mib }'
    done
done
