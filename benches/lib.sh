# Shell functions shared by benches/*/run.sh; sourced, not run. Callers use `set -euo pipefail`.
# shellcheck shell=bash

# Pids of the processes a bench started; stop_started signals exactly those, nothing else.
PIDS=()
stop_started() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# A loopback port nobody listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# build_soak BENCH: cargo build --release of ringway and the bench BENCH; sets RINGWAY and
# CLIENT to their executables (from cargo's JSON messages).
build_soak() {
    echo "building (release)..." >&2
    local json
    json=$(cargo build --release --bin ringway --bench "$1" --message-format=json 2>/dev/null)
    RINGWAY=$(cargo_executable ringway <<<"$json")
    # shellcheck disable=SC2034 # for the caller
    CLIENT=$(cargo_executable "$1" <<<"$json")
}

# cargo_executable TARGET < cargo JSON messages: the last executable built for TARGET.
cargo_executable() {
    python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==sys.argv[1] and m.get("executable"): print(m["executable"])' "$1" | tail -1
}

# gateway_toml GPORT BPORT TOP [LISTENER] [UPSTREAM] [ROUTE]: on stdout, a ringway config with
# one listener on GPORT, one upstream "backend" on BPORT, one route "/" to it and the access log
# off; TOP, LISTENER, UPSTREAM and ROUTE are lines added at the top level and in each table.
gateway_toml() {
    printf '%s\n' "$3"
    printf '[access_log]\nenabled = false\n[[listeners]]\naddress = "127.0.0.1:%s"\n' "$1"
    if [[ -n "${4:-}" ]]; then printf '%s\n' "$4"; fi
    printf '[[upstreams]]\nname = "backend"\nservers = ["127.0.0.1:%s"]\n' "$2"
    if [[ -n "${5:-}" ]]; then printf '%s\n' "$5"; fi
    printf '[[routes]]\npath_prefix = "/"\nupstream = "backend"\n'
    if [[ -n "${6:-}" ]]; then printf '%s\n' "$6"; fi
}

# start_soak DIR BPORT GPORT WORKERS BACKEND_THREADS [ROUTE_LINE...]: $RINGWAY's built-in
# backend on BPORT and ringway (WORKERS workers, one route to the backend, plus ROUTE_LINEs
# in that route) on GPORT, logs and config in DIR; waits up to 10 s for the gateway's port.
# Both pids go into PIDS; sets GW to the gateway's.
start_soak() {
    local dir=$1 bport=$2 gport=$3 workers=$4 backend_threads=$5
    shift 5
    "$RINGWAY" backend --listen "127.0.0.1:$bport" --threads "$backend_threads" >"$dir/backend.log" 2>&1 &
    PIDS+=($!)
    gateway_toml "$gport" "$bport" "workers = $workers
host_check = \"off\"" "max_connections = 20000" "" "$(printf '%s\n' "$@")" >"$dir/ringway.toml"
    "$RINGWAY" run -c "$dir/ringway.toml" >"$dir/gateway.log" 2>&1 &
    GW=$!
    PIDS+=("$GW")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$gport") 2>/dev/null && break
        sleep 0.1
    done
}
