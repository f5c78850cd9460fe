#!/usr/bin/env bash
# WebSocket soak: client (benches/ws/main.rs) -> ringway -> built-in backend /ws echo.
#
#   benches/ws/run.sh            # full: as many of 10,000 connections as the fd limit allows, 60 s
#   benches/ws/run.sh --quick    # 100 connections x 5 s
#   CONNS=5000 DURATION=30 benches/ws/run.sh
#   DIRECT=1 benches/ws/run.sh   # baseline: the same client straight to the backend
#   RELAY=copy benches/ws/run.sh # the route's relay mode (auto | splice | copy)
#   PEER=nginx WORKERS=1 benches/ws/run.sh   # the same soak through nginx (one worker) instead
#
# Every process raises its soft RLIMIT_NOFILE to the hard limit. A tunnel costs ringway two
# fds (client + upstream), so with a hard limit of 20,000 one gateway holds at most ~9,900
# tunnels; CONNS defaults to min(10000, (hard - 200) / 2) and the report says what ran.
# Only the processes started here are stopped (by pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
ulimit -n "$(ulimit -Hn)"
HARD=$(ulimit -Hn)
if [[ $QUICK == 1 ]]; then
    CONNS=${CONNS:-100}; DURATION=${DURATION:-5}
else
    MAXC=$(( (HARD - 200) / 2 )); (( MAXC > 10000 )) && MAXC=10000
    CONNS=${CONNS:-$MAXC}; DURATION=${DURATION:-60}
fi
RATE=${RATE:-10}; SIZE=${SIZE:-500}; RELAY=${RELAY:-auto}
WORKERS=${WORKERS:-2}; BACKEND_THREADS=${BACKEND_THREADS:-1}; CLIENT_THREADS=${CLIENT_THREADS:-1}

build_soak ws

BPORT=$(free_port); GPORT=$(free_port)
DIR=$(mktemp -d /tmp/ringway-ws-soak.XXXXXX)
trap stop_started EXIT

start_soak "$DIR" "$BPORT" "$GPORT" "$WORKERS" "$BACKEND_THREADS" 'tunnel_idle_timeout = "120s"' "relay = \"$RELAY\""
echo "gateway pid $GW on :$GPORT (workers $WORKERS), backend :$BPORT (threads $BACKEND_THREADS); relay $RELAY; nofile hard $HARD; $(nproc) CPUs" >&2
TARGET=$GPORT
MEASURED=$GW
if [[ "${DIRECT:-0}" == 1 ]]; then TARGET=$BPORT; echo "DIRECT=1: client talks to the backend itself (baseline)" >&2; fi
if [[ "${PEER:-}" == nginx ]]; then
    # nginx as the WebSocket proxy in front of the same backend; its one worker is measured.
    TARGET=$(free_port)
    cat >"$DIR/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $DIR/nginx.pid; error_log $DIR/nginx.err;
worker_rlimit_nofile $HARD;
events { worker_connections 20000; }
http { access_log off;
  server { listen 127.0.0.1:$TARGET;
    location / { proxy_pass http://127.0.0.1:$BPORT; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade";
      proxy_read_timeout 120s; proxy_send_timeout 120s; } } }
NGINX
    nginx -c "$DIR/nginx.conf" -p "$DIR" &
    PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$TARGET") 2>/dev/null && break
        sleep 0.1
    done
    MEASURED=$(pgrep -P "${PIDS[-1]}" | head -1)
    echo "PEER=nginx: client talks to nginx on :$TARGET (worker pid $MEASURED)" >&2
fi
"$CLIENT" --run --addr "127.0.0.1:$TARGET" --conns "$CONNS" --rate "$RATE" --size "$SIZE" \
    --duration "$DURATION" --threads "$CLIENT_THREADS" --pid "$MEASURED" | tee "$DIR/report.txt"
echo "logs and report in $DIR" >&2
