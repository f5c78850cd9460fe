#!/usr/bin/env bash
# Body-relay benchmark: 1 MiB and 16 MiB GET and POST through ringway (relay = splice / copy),
# nginx and HAProxy (option splice-auto), all in front of the same built-in backend, plus the
# backend alone as the baseline. Prints MiB/s and proxy CPU per MiB (user/sys from
# /proc/PID/stat), then strace -c syscall counts of ringway in splice and copy mode.
#
# Usage: [PIPE_SIZE=64KiB] [PIN=0|1] benches/body/run.sh [seconds-per-run (5)] [connections (8)]
# PIN=1 (the load harness's arrangement): each proxy alone on CPU 0, backend and wrk on CPU 1, so
# "direct" and the proxied runs give wrk and the backend the same core and the proxy its own;
# PIN=0 (default) lets all three compete for both cores.
# Needs: cargo build --release; apt-get install nginx-light haproxy wrk strace
# Kills only the processes it started (trap EXIT).
set -euo pipefail

DUR=${1:-5}
CONNS=${2:-8}
PIPE_SIZE=${PIPE_SIZE:-64KiB}
PIN=${PIN:-0}
PROXY_CPU=() LOAD_CPU=()
if [ "$PIN" = 1 ]; then PROXY_CPU=(taskset -c 0); LOAD_CPU=(taskset -c 1); fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${RINGWAY_BIN:-$ROOT/target/release/ringway}
WORK=$(mktemp -d /tmp/ringway-body-bench.XXXXXX)
TICK=$(getconf CLK_TCK)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

cleanup() {
    stop_started
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk nginx haproxy strace; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx-light haproxy wrk strace)"; exit 1; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release"; exit 1; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2
    exit 1
}

BACKEND=$(free_port)
"${LOAD_CPU[@]}" "$BIN" backend --listen "127.0.0.1:$BACKEND" --threads 1 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BACKEND"

start_ringway() { # mode port [driver]
    gateway_toml "$2" "$BACKEND" "workers = 1
io_driver = \"${3:-auto}\"
host_check = \"warn\"
pipe_size = \"$PIPE_SIZE\"" "" "" "relay = \"$1\"" >"$WORK/ringway-$1-${3:-auto}.toml"
    "${PROXY_CPU[@]}" "$BIN" run -c "$WORK/ringway-$1-${3:-auto}.toml" >"$WORK/ringway-$1.log" 2>&1 &
    PIDS+=($!)
    wait_port "$2"
}

start_nginx() { # port
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        client_max_body_size 0;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    "${PROXY_CPU[@]}" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
    PIDS+=($!)
    wait_port "$1"
}

start_haproxy() { # port
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option splice-auto
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$1
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND
EOF
    "${PROXY_CPU[@]}" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
    PIDS+=($!)
    wait_port "$1"
}

# utime and stime (clock ticks) summed over the given pids.
cpu_ticks() {
    local u=0 s=0
    for p in "$@"; do
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")
        u=$((u + f[11])); s=$((s + f[12]))
    done
    echo "$u $s"
}

post_script() { # size
    local f="$WORK/post-$1.lua"
    cat >"$f" <<EOF
wrk.method = "POST"
wrk.body = string.rep("a", $1)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
    echo "$f"
}

# run NAME PORT METHOD SIZE PIDS...: one wrk run; prints a table row.
run() {
    local name=$1 port=$2 method=$3 size=$4
    shift 4
    local url args=()
    if [ "$method" = GET ]; then
        url="http://127.0.0.1:$port/size/$size"
    else
        # Upload: the backend reads and discards the body and answers with an empty body, so
        # only the request body crosses the proxy.
        url="http://127.0.0.1:$port/size/0"
        args=(-s "$(post_script "$size")")
    fi
    local before after
    before=$( [ $# -gt 0 ] && cpu_ticks "$@" || echo "0 0")
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" "${args[@]}" "$url" >"$WORK/wrk.out"
    after=$( [ $# -gt 0 ] && cpu_ticks "$@" || echo "0 0")
    local reqs secs
    reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    secs=$(awk '/requests in/ {sub(/s,/, "", $4); print $4}' "$WORK/wrk.out")
    local errs
    errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$WORK/wrk.out")
    read -r bu bs <<<"$before"
    read -r au as <<<"$after"
    # Body MiB moved: response bodies (GET) or request bodies (POST).
    python3 - "$name" "$method" "$size" "$reqs" "$secs" $((au - bu)) $((as - bs)) "$TICK" "$errs" <<'EOF'
import sys
name, method, size, reqs, secs, du, ds, tick, errs = sys.argv[1:]
mib = int(reqs) * int(size) / 2**20
rate = mib / float(secs)
u, s = int(du) / int(tick) * 1e3, int(ds) / int(tick) * 1e3  # ms
per = lambda x: x / mib if mib else 0
cpu = "-" if name == "direct" else f"{per(u):6.2f} {per(s):6.2f} {per(u + s):6.2f}"
print(f"{name:9} {method:4} {int(size)//2**20:3} MiB  {rate:9.1f} MiB/s  cpu ms/MiB (user sys total): {cpu}  {errs}")
EOF
}

RW_SPLICE=$(free_port); start_ringway splice "$RW_SPLICE"; P_SPLICE=${PIDS[-1]}
RW_COPY=$(free_port); start_ringway copy "$RW_COPY"; P_COPY=${PIDS[-1]}
NGINX=$(free_port); start_nginx "$NGINX"
# The master forks one worker; both are counted.
P_NGINX="${PIDS[-1]} $(pgrep -P "${PIDS[-1]}" | tr '\n' ' ')"
HAP=$(free_port); start_haproxy "$HAP"; P_HAP=${PIDS[-1]}

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, wrk -t1 -c$CONNS -d${DUR}s, 1 proxy worker each, ringway pipe_size $PIPE_SIZE, PIN=$PIN"
for method in GET POST; do
    for size in 1048576 16777216; do
        run direct "$BACKEND" "$method" "$size"
        run splice "$RW_SPLICE" "$method" "$size" $P_SPLICE
        run copy "$RW_COPY" "$method" "$size" $P_COPY
        run haproxy "$HAP" "$method" "$size" $P_HAP
        run nginx "$NGINX" "$method" "$size" $P_NGINX
    done
done

# Syscalls per MiB: bodies must go through splice, not recv/send (io_uring recv/send are not
# syscalls, so io_uring_enter counts stand in for them in copy mode).
strace_run() { # name port pid
    strace -c -f -p "$3" -o "$WORK/strace-$1.txt" &
    local sp=$!
    sleep 0.5
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$2/size/16777216" >"$WORK/wrk.out"
    kill -INT "$sp"; wait "$sp" 2>/dev/null || true
    local reqs
    reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    echo "## strace -c -f, ringway relay=$1, GET 16 MiB x $reqs ($((reqs * 16)) MiB)"
    awk 'NR<=2 || /splice|recv|send|read|write|io_uring_enter|epoll_wait|fcntl|pipe|total/' "$WORK/strace-$1.txt"
}
strace_run splice "$RW_SPLICE" "$P_SPLICE"
strace_run copy "$RW_COPY" "$P_COPY"
# On epoll the copy relay's recv/send are visible syscalls (on io_uring they hide in the ring).
RW_EPOLL=$(free_port); start_ringway copy "$RW_EPOLL" epoll; strace_run copy-epoll "$RW_EPOLL" "${PIDS[-1]}"
RW_SEPOLL=$(free_port); start_ringway splice "$RW_SEPOLL" epoll; strace_run splice-epoll "$RW_SEPOLL" "${PIDS[-1]}"
