#!/usr/bin/env bash
# Pid lists (PIDS_<name>, kids) are space-separated on purpose and split where used.
# shellcheck disable=SC2086,SC2206
# ringway load harness: a fixed backend (nginx), and ringway / nginx / HAProxy as proxies in
# front of it (1 worker each), driven by wrk in interleaved rounds. Prints a table (rps, p50,
# p99, errors, proxy CPU µs/req user+sys, ratios to nginx), draws chart-<scenario>.png, then
# measures RSS per idle keep-alive connection, syscalls/req (strace -c) and allocations/req
# (ringway under callgrind). See benches/README.md for the method and a recorded run.
#
# usage: benches/load/run.sh [options]
#   --ringway PATH      ringway binary (default: target/release/ringway; built if missing)
#   --duration S        seconds per wrk run (default 5)
#   --rounds N          interleaved rounds (default 3)
#   --conc "1 10 100"   wrk concurrencies
#   --out DIR           output dir (default benches/load/out, git-ignored)
#   --proxies LIST      subset of "ringway nginx haproxy"
#   --scenario NAME     workload; only "small" (50-byte GET) exists yet, see scenario_setup
#   --idle-conns N      connections for the memory test (default 10000)
#   --no-memory / --no-syscalls / --no-allocs / --no-callgrind   skip a phase
#   --no-pin            do not pin processes to CPUs
#   --quick             smoke run: 1 round, 1 s, c=10, 500 idle conns, no callgrind
# Every option also has an env form: RINGWAY DURATION ROUNDS CONCS OUT PROXIES ...
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
H="$HERE/harness.py"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

RINGWAY=${RINGWAY:-$ROOT/target/release/ringway}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONCS=${CONCS:-"1 10 100"}
OUT=${OUT:-$ROOT/benches/load/out}
PROXIES=${PROXIES:-"ringway nginx haproxy"}
SCENARIO=${SCENARIO:-small}
IDLE_CONNS=${IDLE_CONNS:-10000}
DO_MEMORY=${DO_MEMORY:-1}
DO_SYSCALLS=${DO_SYSCALLS:-1}
DO_ALLOCS=${DO_ALLOCS:-1}
DO_CALLGRIND=${DO_CALLGRIND:-1}
# Pinning (2-core machine): the proxy under test gets CPU 0 to itself; the backend and wrk
# share CPU 1. Every proxy sees the same arrangement, and the proxy's CPU numbers are not
# disturbed by the load generator's.
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SYSCALL_SECS=3      # strace window (wrk c=10)
ALLOC_REQS_LO=200   # sequential requests in the two callgrind runs; the difference
ALLOC_REQS_HI=1200  # cancels start-up and shut-down allocations

usage() { sed -n '/^# ringway load harness/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --ringway) RINGWAY=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --conc) CONCS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --proxies) PROXIES=$2; shift ;;
    --scenario) SCENARIO=$2; shift ;;
    --idle-conns) IDLE_CONNS=$2; shift ;;
    --no-memory) DO_MEMORY=0 ;;
    --no-syscalls) DO_SYSCALLS=0 ;;
    --no-allocs) DO_ALLOCS=0 ;;
    --no-callgrind) DO_CALLGRIND=0 ;;
    --no-pin) PIN=0 ;;
    --quick) ROUNDS=1 DURATION=1 CONCS=10 IDLE_CONNS=500 DO_CALLGRIND=0 SYSCALL_SECS=1 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
  shift
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN="$OUT/run"          # configs, pid files, logs of this run
rm -rf "$RUN"; mkdir -p "$RUN/logs"
: > "$OUT/results.jsonl"; : > "$OUT/memory.jsonl"; : > "$OUT/syscalls.jsonl"; : > "$OUT/allocs_perf.jsonl"
rm -f "$OUT/allocs.json"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
# Every process we start goes into OURS; on exit we signal exactly those pids, nothing else.
# A process we have stopped and reaped is forgotten at once, so a recycled pid is never hit.
OURS=()
forget() {
  local p q keep=()
  for p in "${OURS[@]}"; do
    for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
    keep+=("$p")
  done
  OURS=("${keep[@]}")
}
# term_then_kill TRIES PAUSE PID... : TERM the pids, wait (up to TRIES x PAUSE s) until all
# are gone, then KILL whatever is left
term_then_kill() {
  local tries=$1 pause=$2 p
  shift 2
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq "$tries"); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep "$pause"
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}
cleanup() {
  term_then_kill 10 0.2 "${OURS[@]}"
  remove_probes
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Command prefixes that pin to a CPU. Arrays, not a function: a function run with `&` forks
# a subshell, and then $! would be the subshell's pid instead of the process we measure.
PIN_PROXY=(); PIN_LOAD=()
set_pinning() {
  if [ "$PIN" = 1 ]; then PIN_PROXY=(taskset -c "$PROXY_CPU"); PIN_LOAD=(taskset -c "$LOAD_CPU"); fi
}

# children PID : direct children (nginx workers of a master we started)
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }

# stop_pids PID... : TERM our processes, wait (bounded: 30 s, ringway drains) until gone
stop_pids() {
  local p
  term_then_kill 300 0.1 "$@"
  for p in "$@"; do wait "$p" 2>/dev/null || true; done   # reap (children of this shell only)
  forget "$@"
}

wait_ready() {  # wait_ready PORT PID [TRIES] : up to TRIES x 0.1 s for a 2xx, while PID lives
  local port=$1 pid=$2 tries=${3:-100}
  for _ in $(seq "$tries"); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$PY" "$H" get "http://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- environment
ensure_tools() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v strace >/dev/null || missing+=(strace)
  command -v taskset >/dev/null || missing+=(util-linux)
  if [ "$DO_ALLOCS" = 1 ] && ! command -v valgrind >/dev/null; then missing+=(valgrind); fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
      die "apt-get install ${missing[*]} failed"
    fi
  fi
  if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib (pip)"
    "$PY" -m pip install -q matplotlib || log "WARN: no matplotlib; table only, no chart"
  fi
}

# 10,000 idle client connections need ~10k fds in the proxy (plus upstreams); take the hard
# limit. On the reference machine it is 20,000 and cannot be raised further (design.md).
raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  log "fd limit: $(ulimit -n)"
}

# ---------------------------------------------------------------- scenarios
# A scenario fixes what the backend serves and what wrk asks for. To add the 1 MiB/16 MiB
# body scenario: serve files from the backend (BACKEND_LOCATION), set WRK_ARGS to a Lua script
# for POST, and report MiB/s and CPU per MiB in report.py (bytes are in wrk's "read" line).
scenario_setup() {
  case $SCENARIO in
    small)
      local body; body=$(head -c 50 /dev/zero | tr '\0' 'x')
      BACKEND_LOCATION="location / { return 200 \"$body\"; }"
      WRK_PATH=/
      WRK_ARGS=()
      ;;
    *) die "unknown scenario '$SCENARIO' (have: small)" ;;
  esac
}

# ---------------------------------------------------------------- backend
start_backend() {
  cat > "$RUN/backend.conf" <<EOF
# Fixed-response backend: 1 worker, no logs, keep-alive forever.
worker_processes 1; daemon off; pid $RUN/backend.pid; error_log $RUN/logs/backend.err;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
  server { listen 127.0.0.1:$BACKEND_PORT backlog=4096;
    $BACKEND_LOCATION } }
EOF
  "${PIN_LOAD[@]}" nginx -c "$RUN/backend.conf" -p "$RUN" >>"$RUN/logs/backend.out" 2>&1 &
  BACKEND_PID=$!; OURS+=("$BACKEND_PID")
  wait_ready "$BACKEND_PORT" "$BACKEND_PID" || die "backend did not start (see $RUN/logs/backend.err)"
  local kids; read -r -a kids <<<"$(children "$BACKEND_PID" | tr '\n' ' ')"
  OURS+=("${kids[@]}")
  log "backend nginx up on :$BACKEND_PORT (pid $BACKEND_PID)"
}

# ---------------------------------------------------------------- proxies
# Each writes its config, starts pinned in the foreground (so $! is the real pid), and
# sets PIDS_<name> (all its processes: CPU and RSS are summed over them) and PORT_<name>.
conf_nginx() {
  cat > "$RUN/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $RUN/nginx.pid; error_log $RUN/logs/nginx.err;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
  upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 256; }
  server { listen 127.0.0.1:$PORT_nginx backlog=4096;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
  echo nginx -c "$RUN/nginx.conf" -p "$RUN"
}

conf_haproxy() {
  # maxconn above the idle-connection test's count. HAProxy wants 2 fds per conn (client +
  # server) and by default (strict-limits) refuses to start when the hard limit (20k here)
  # is lower; idle client connections hold no server fd, so 20k fds are enough in practice.
  cat > "$RUN/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $((IDLE_CONNS + 100))
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$PORT_haproxy backlog 4096
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
  echo haproxy -db -f "$RUN/haproxy.cfg"
}

conf_ringway() {
  gateway_toml "$PORT_ringway" "$BACKEND_PORT" 'workers = 1
host_check = "warn"      # this machine fails some host checks (nofile); do not refuse to start
drain_timeout = "2s"     # stopping between phases should not wait the default 10 s' 'backlog = 4096
max_connections = 20000
keepalive_timeout = "600s"   # as nginx/HAProxy here: idle test connections must stay open' \
    'max_idle = 256' > "$RUN/ringway.toml"
  echo "$RINGWAY" run -c "$RUN/ringway.toml"
}

# start_proxy NAME [WRAPPER...] : start NAME (optionally under a wrapper, e.g. valgrind)
start_proxy() {
  local name=$1; shift
  local port_var="PORT_$name" cmd
  read -r -a cmd <<<"$(conf_"$name")"
  "${PIN_PROXY[@]}" "$@" "${cmd[@]}" >>"$RUN/logs/$name.out" 2>&1 &
  local pid=$!; OURS+=("$pid")
  # Under a wrapper (valgrind) start-up is much slower: allow 60 s instead of 10.
  local tries=100; [ $# -gt 0 ] && tries=600
  if ! wait_ready "${!port_var}" "$pid" "$tries"; then
    log "WARN: $name did not answer on :${!port_var} (log: $RUN/logs/$name.out)"
    tail -5 "$RUN/logs/$name.out" >&2 || true
    stop_pids "$pid"
    return 1
  fi
  local kids; kids=$(children "$pid" | tr '\n' ' ')
  OURS+=($kids)
  printf -v "PIDS_$name" '%s' "$pid $kids"
  log "$name up on :${!port_var} (pids $pid $kids)"
}

stop_proxy() { local v="PIDS_$1"; [ -n "${!v:-}" ] && stop_pids ${!v}; printf -v "PIDS_$1" '%s' ""; }

# Find or build ringway; drop it from the run (loudly) if unusable, so peers still run.
prepare_ringway() {
  case " $PROXIES " in *" ringway "*) ;; *) return 0 ;; esac
  if [ ! -x "$RINGWAY" ] && [ "$RINGWAY" = "$ROOT/target/release/ringway" ] && [ -f "$ROOT/Cargo.toml" ]; then
    log "building ringway (cargo build --release)"
    (cd "$ROOT" && cargo build --release 2>&1 | tail -3) >&2 || true
  fi
  if [ ! -x "$RINGWAY" ]; then
    log "WARN: ringway binary '$RINGWAY' missing: ringway's rows will be absent"
    PROXIES=${PROXIES//ringway/}
  fi
}

# ---------------------------------------------------------------- load
# run_wrk NAME CONC SECS ROUND : one wrk run, one JSON row (with proxy CPU/req) to stdout
run_wrk() {
  local name=$1 c=$2 secs=$3 rnd=$4 port_var="PORT_$1" pids_var="PIDS_$1" cpu0 cpu1 out
  cpu0=$("$PY" "$H" cpu ${!pids_var})
  # wrk's own -d bounds the run; timeout guards a wedged wrk.
  out=$("${PIN_LOAD[@]}" timeout -s INT $((secs + 30)) wrk -t1 -c"$c" -d"${secs}s" --latency \
        "${WRK_ARGS[@]}" "http://127.0.0.1:${!port_var}$WRK_PATH" 2>&1) || true
  cpu1=$("$PY" "$H" cpu ${!pids_var})
  printf '%s\n' "$out" | "$PY" "$H" wrk-json "$SCENARIO" "$rnd" "$name" "$c" "$secs" "$cpu0" "$cpu1"
}

load_rounds() {
  local r name c row
  for r in $(seq "$ROUNDS"); do
    for name in $PROXIES; do
      for c in $CONCS; do
        log "[round $r/$ROUNDS] $name c=$c ${DURATION}s ..."
        row=$(run_wrk "$name" "$c" "$DURATION" "$r")
        printf '%s\n' "$row" >>"$OUT/results.jsonl"
        printf '%s\n' "$row" | "$PY" "$H" show row >&2
      done
    done
  done
}

# ---------------------------------------------------------------- syscalls (strace -c)
# Counts only: strace slows the proxy a lot, so the wrk numbers of this window are discarded.
measure_syscalls() {
  local name=$1 c=10 pids_var="PIDS_$1" port_var="PORT_$1" args=() p out reqs
  for p in ${!pids_var}; do args+=(-p "$p"); done
  log "syscalls: $name (strace -c -f, wrk c=$c ${SYSCALL_SECS}s)"
  strace -c -f -o "$RUN/strace-$name.txt" "${args[@]}" 2>>"$RUN/logs/strace-$name.err" &
  local spid=$!; OURS+=("$spid")
  sleep 1   # let strace attach to every thread before load starts
  out=$("${PIN_LOAD[@]}" timeout -s INT $((SYSCALL_SECS + 30)) wrk -t1 -c$c -d"${SYSCALL_SECS}s" \
        "${WRK_ARGS[@]}" "http://127.0.0.1:${!port_var}$WRK_PATH" 2>&1) || true
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  forget "$spid"
  reqs=$(printf '%s\n' "$out" | awk '/requests in/{print $1}')
  [ -s "$RUN/strace-$name.txt" ] || { log "WARN: no strace output for $name"; return 0; }
  "$PY" "$H" strace-summary "$RUN/strace-$name.txt" "${reqs:-0}" \
    | "$PY" -c 'import json,sys; r=json.load(sys.stdin); r["proxy"]=sys.argv[1]; r["conc"]=int(sys.argv[2]); print(json.dumps(r))' "$name" "$c" \
    >>"$OUT/syscalls.jsonl"
  tail -1 "$OUT/syscalls.jsonl" | "$PY" "$H" show syscalls >&2
}

# ---------------------------------------------------------------- allocations (perf uprobes)
# Exact counts under real load: a uprobe on each allocator entry point (mimalloc's, which
# ringway's #[global_allocator] calls, and libc's), counted by `perf stat -p` for the proxy's
# pids only, over a wrk c=10 window; divided by the requests wrk completed. Uprobes slow every
# allocation (a trap each), so this window's timings are discarded like strace's.
PROBE_GROUP=rwharness
PROBES_ADDED=0
ALLOC_FUNCS="mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned mi_malloc mi_zalloc mi_calloc mi_realloc malloc calloc realloc posix_memalign aligned_alloc"

remove_probes() {
  [ "$PROBES_ADDED" = 1 ] && perf probe -q -d "$PROBE_GROUP:*" >/dev/null 2>&1 || true
}

# add_probes PREFIX FILE : probe every allocator function FILE defines (as PREFIX_func)
add_probes() {
  local prefix=$1 file=$2 f syms
  syms=$(nm -D --defined-only "$file" 2>/dev/null; nm --defined-only "$file" 2>/dev/null) || true
  for f in $ALLOC_FUNCS; do
    grep -qE "[[:space:]][TtWi][[:space:]]$f(@@.*)?$" <<<"$syms" || continue
    perf probe -q -x "$file" -a "$PROBE_GROUP:${prefix}_$f=$f" >/dev/null 2>&1 && PROBES_ADDED=1
  done
}

measure_allocs_perf() {
  local name=$1 c=10 pids_var="PIDS_$1" port_var="PORT_$1" p exe libc out reqs
  command -v perf >/dev/null || { log "WARN: no perf: allocations via uprobes skipped"; return 0; }
  remove_probes
  p=$(awk '{print $NF}' <<<"${!pids_var}")   # the last pid: nginx's worker, else the process
  exe=$(readlink -f /proc/"$p"/exe)
  libc=$(awk '$6 ~ /libc\.so/ {print $6; exit}' /proc/"$p"/maps 2>/dev/null) || true
  add_probes bin "$exe"
  [ -n "$libc" ] && add_probes libc "$libc"
  if [ "$PROBES_ADDED" != 1 ]; then log "WARN: could not add uprobes for $name"; return 0; fi
  log "allocations: $name (perf uprobes on allocator entry points, wrk c=$c ${SYSCALL_SECS}s)"
  local pidlist; pidlist=$(tr ' ' ',' <<<"${!pids_var}" | sed 's/,*$//')
  perf stat -x, -o "$RUN/perf-allocs-$name.txt" -e "$PROBE_GROUP:*" -p "$pidlist" \
      2>>"$RUN/logs/perf-$name.err" &
  local ppid=$!; OURS+=("$ppid")
  sleep 1
  out=$("${PIN_LOAD[@]}" timeout -s INT $((SYSCALL_SECS + 30)) wrk -t1 -c$c -d"${SYSCALL_SECS}s" \
        "${WRK_ARGS[@]}" "http://127.0.0.1:${!port_var}$WRK_PATH" 2>&1) || true
  kill -INT "$ppid" 2>/dev/null || true
  wait "$ppid" 2>/dev/null || true
  forget "$ppid"
  remove_probes; PROBES_ADDED=0
  reqs=$(printf '%s\n' "$out" | awk '/requests in/{print $1}')
  "$PY" "$H" perf-allocs "$RUN/perf-allocs-$name.txt" "${reqs:-0}" "$name" >>"$OUT/allocs_perf.jsonl"
  tail -1 "$OUT/allocs_perf.jsonl" | "$PY" "$H" show allocs >&2
}

# ---------------------------------------------------------------- allocations (callgrind)
# ringway links mimalloc, which valgrind's malloc replacement (and so dhat) does not see;
# callgrind instead counts every call into the allocator's entry points, exactly. Two runs
# with different request counts: the difference cancels start-up and shutdown.
alloc_run() {  # alloc_run N : writes "allocs requests" to $RUN/allocs.N.res
  local n=$1 cg="$RUN/callgrind.$1.out"
  rm -f "$cg"*
  start_proxy ringway valgrind --tool=callgrind --compress-strings=no --dump-instr=no \
      --callgrind-out-file="$cg" || return 1
  local done_reqs pid=$PIDS_ringway
  done_reqs=$("$PY" "$H" seq-client "$PORT_ringway" "$n" 300 2>>"$RUN/logs/seq-client.err") || true
  # Dump through vgdb rather than at exit: under valgrind, ringway's sigwait never sees
  # SIGTERM while its worker sleeps in io_uring_enter, so it would not exit by itself.
  timeout 60 callgrind_control -d $pid >>"$RUN/logs/callgrind_control.log" 2>&1 || true
  kill -KILL $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  forget $pid
  PIDS_ringway=""
  [ -s "$cg.1" ] || { log "WARN: no callgrind dump ($cg.1)"; return 1; }
  "$PY" "$H" callgrind-allocs "$cg.1" >"$RUN/allocs.$n.json"
  echo "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$RUN/allocs.$n.json") ${done_reqs:-0}" \
    >"$RUN/allocs.$n.res"
}

measure_allocs() {
  log "allocations: ringway under callgrind, $ALLOC_REQS_LO then $ALLOC_REQS_HI sequential requests"
  if ! { alloc_run "$ALLOC_REQS_LO" && alloc_run "$ALLOC_REQS_HI"; }; then
    log "WARN: allocation count failed (see $RUN/logs/ringway.out)"; return 0
  fi
  "$PY" "$H" alloc-diff "$RUN" "$ALLOC_REQS_LO" "$ALLOC_REQS_HI" >"$OUT/allocs.json"
  log "    $("$PY" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["per_request"], 2))' "$OUT/allocs.json") allocations/req"
}

# ---------------------------------------------------------------- memory (idle conns)
# Fresh proxy, one warm-up request, RSS; then IDLE_CONNS connections that each made one
# request and now sit idle; RSS again. KiB per idle connection = delta / connections held.
measure_memory() {
  local name=$1 port_var="PORT_$1" pids_var="PIDS_$1"
  start_proxy "$name" || return 0
  "$PY" "$H" get "http://127.0.0.1:${!port_var}/" || true
  sleep 0.5
  local before; before=$("$PY" "$H" rss ${!pids_var})
  local fifo="$RUN/idle-$name.fifo" ready="$RUN/idle-$name.ready"
  rm -f "$fifo"; mkfifo "$fifo"
  log "memory: $name, $IDLE_CONNS idle keep-alive connections (RSS before: ${before} KiB)"
  "${PIN_LOAD[@]}" "$PY" "$HERE/idle_conns.py" "${!port_var}" "$IDLE_CONNS" 300 \
      <"$fifo" >"$ready" 2>"$RUN/logs/idle-$name.err" &
  local cpid=$!; OURS+=("$cpid")
  exec {hold}>"$fifo"   # the client holds its connections until this closes
  for _ in $(seq 1500); do   # up to 150 s
    grep -q '^ready' "$ready" 2>/dev/null && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1   # let the proxy settle (lazy frees, pool trims)
  local after held failed
  after=$("$PY" "$H" rss ${!pids_var})
  read -r _ held failed < <(grep '^ready' "$ready" || echo "ready 0 $IDLE_CONNS")
  exec {hold}>&-
  wait "$cpid" 2>/dev/null || true
  forget "$cpid"
  stop_proxy "$name"
  "$PY" -c 'import json,sys; n,w,b,a,h,f=sys.argv[1:]; h=int(h)
print(json.dumps({"proxy":n,"wanted":int(w),"held":h,"failed":int(f),"rss_before_kib":int(b),
 "rss_after_kib":int(a),"kib_per_conn":(int(a)-int(b))/h if h else None}))' \
    "$name" "$IDLE_CONNS" "$before" "$after" "$held" "$failed" >>"$OUT/memory.jsonl"
  log "    $name: $held held ($failed failed), RSS $before -> $after KiB = $("$PY" -c \
      'import sys; b,a,h=map(int,sys.argv[1:]); print(f"{(a-b)/h:.2f}" if h else "-")' "$before" "$after" "$held") KiB/conn"
}

# ---------------------------------------------------------------- main
main() {
  ensure_tools
  raise_nofile
  set_pinning
  scenario_setup
  prepare_ringway
  read -r BACKEND_PORT PORT_ringway PORT_nginx PORT_haproxy <<<"$("$PY" "$H" freeports 4)"
  log "out: $OUT  proxies: $PROXIES  c: $CONCS  rounds: $ROUNDS x ${DURATION}s  pin: $PIN"
  {
    echo "date: $(date -u +%FT%TZ)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc)"
    echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"
    echo "ringway: $RINGWAY"
    echo "ringway_commit: ${RINGWAY_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    echo "scenario=$SCENARIO rounds=$ROUNDS duration=$DURATION concs='$CONCS' pin=$PIN proxy_cpu=$PROXY_CPU load_cpu=$LOAD_CPU"
  } >"$OUT/meta.txt"
  start_backend

  local name up=""
  for name in $PROXIES; do start_proxy "$name" && up+="$name "; done
  PROXIES=$up
  [ -n "$PROXIES" ] || die "no proxy started"
  load_rounds
  if [ "$DO_SYSCALLS" = 1 ]; then for name in $PROXIES; do measure_syscalls "$name"; done; fi
  if [ "$DO_ALLOCS" = 1 ]; then for name in $PROXIES; do measure_allocs_perf "$name"; done; fi
  for name in $PROXIES; do stop_proxy "$name"; done

  if [ "$DO_MEMORY" = 1 ]; then for name in $PROXIES; do measure_memory "$name"; done; fi
  # Cross-check of ringway's count by a second exact method (slow: valgrind).
  case " $PROXIES " in
    *" ringway "*) if [ "$DO_ALLOCS" = 1 ] && [ "$DO_CALLGRIND" = 1 ]; then measure_allocs; fi ;;
  esac

  log "report:"
  "$PY" "$HERE/report.py" "$OUT"
  log "done: $OUT/table.md, summary.csv, summary.json, chart-$SCENARIO.png"
}

main
