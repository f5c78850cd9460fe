#!/usr/bin/env python3
"""Helpers for benches/load/run.sh: everything that is easier in Python than in bash.

Subcommands (each small, reads/writes files or stdout so run.sh stays a plain script):
  freeports N                 print N distinct free loopback TCP ports
  cpu PID...                  print "utime stime" clock ticks summed over the pids
  rss PID...                  print VmRSS in KiB summed over the pids
  wrk-json ...                parse wrk output (stdin) plus CPU deltas into one JSON line
  get URL                     one GET, exit 0 on a 2xx (readiness probe; no curl dependency)
  seq-client PORT N           N sequential keep-alive GETs on one connection (alloc counting)
  strace-summary FILE REQS    syscalls per request from an `strace -c` summary
  callgrind-allocs FILE       allocation calls recorded in a callgrind.out file
  alloc-diff RUN_DIR LO HI    allocations per request from two callgrind runs
  perf-allocs FILE REQS NAME  allocations per request from perf uprobe counts
  show row|syscalls|allocs    one progress line for a JSON row on stdin
"""
import json
import os
import re
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def freeports(n):
    # Keep every socket bound until all are chosen so the n ports are distinct.
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm (field 2) may contain spaces; fields after the closing paren are fixed.
    return data[data.rindex(")") + 2:].split()


def cpu(*pids):
    u = s = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
        except OSError:
            continue  # process gone: contributes nothing
        u += int(f[11])  # utime, field 14
        s += int(f[12])  # stime, field 15
    print(u, s)


def rss(*pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    print(total)


_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def _to_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    """Requests, rps, p50/p99 (µs) and errors from `wrk --latency` output."""
    r = {"requests": 0, "rps": 0.0, "p50_us": None, "p99_us": None, "errors": 0}
    for line in out.splitlines():
        t = line.split()
        if "requests in" in line:
            r["requests"] = int(t[0])
        elif line.startswith("Requests/sec:"):
            r["rps"] = float(t[1])
        elif len(t) == 2 and t[0] == "50%":
            r["p50_us"] = _to_us(t[1])
        elif len(t) == 2 and t[0] == "99%":
            r["p99_us"] = _to_us(t[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            r["errors"] += int(t[-1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 0, write 0, timeout 0"
            r["errors"] += sum(int(x) for x in re.findall(r"\d+", line))
    return r


def wrk_json(scenario, rnd, proxy, conc, secs, cpu0, cpu1):
    """One result row: wrk numbers plus the proxy's CPU µs per request (user, sys)."""
    out = sys.stdin.read()
    r = parse_wrk(out)
    u0, s0 = map(int, cpu0.split())
    u1, s1 = map(int, cpu1.split())
    reqs = max(r["requests"], 1)
    r.update(
        scenario=scenario, round=int(rnd), proxy=proxy, conc=int(conc), secs=float(secs),
        cpu_user_us=(u1 - u0) / CLK_TCK * 1e6 / reqs,
        cpu_sys_us=(s1 - s0) / CLK_TCK * 1e6 / reqs,
    )
    r["cpu_us"] = r["cpu_user_us"] + r["cpu_sys_us"]
    # Share of one core the proxy used: near 100% means the proxy was the bottleneck;
    # well below means the load side (wrk + backend on the other core) was.
    r["cpu_util_pct"] = (u1 - u0 + s1 - s0) / CLK_TCK / float(secs) * 100
    if r["requests"] == 0:
        r["errors"] = max(r["errors"], 1)  # wrk failed outright: count it, never hide it
        r["wrk_output"] = out[-500:]
    print(json.dumps(r))


def get(url):
    m = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)?", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3) or "/"
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        sys.exit(1)
    sys.exit(0 if re.match(rb"HTTP/1\.[01] 2\d\d", head) else 1)


def _read_response(sock, buf):
    """Read one Content-Length response from sock; return leftover bytes."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not re.match(rb"HTTP/1\.[01] 2\d\d", head):
        raise ConnectionError(f"bad status: {head[:40]!r}")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return rest[length:]


def seq_client(port, n, deadline_s=600):
    """N GETs one after another on one keep-alive connection; bounded in count and time."""
    end = time.monotonic() + float(deadline_s)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    done = 0
    with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as s:
        buf = b""
        for _ in range(int(n)):
            if time.monotonic() > end:
                break
            s.sendall(req)
            buf = _read_response(s, buf)
            done += 1
    print(done)
    sys.exit(0 if done == int(n) else 1)


def strace_summary(path, reqs, top=8):
    """Parse `strace -c` output: total calls, calls per request and the top syscalls."""
    rows, total = [], 0
    with open(path) as f:
        for line in f:
            t = line.split()
            # data rows: % time, seconds, usecs/call, calls, [errors], syscall
            if len(t) >= 5 and re.fullmatch(r"[\d.]+", t[0]) and t[-1] != "total":
                calls = int(t[3])
                errors = int(t[4]) if len(t) == 6 else 0
                rows.append((t[-1], calls, errors))
            elif t and t[-1] == "total" and len(t) >= 4:
                total = int(t[3])
    reqs = max(int(reqs), 1)
    rows.sort(key=lambda r: -r[1])
    out = {
        "requests": int(reqs), "syscalls": total, "per_request": total / reqs,
        "top": [{"syscall": n, "calls": c, "errors": e, "per_request": c / reqs}
                for n, c, e in rows[:top]],
    }
    print(json.dumps(out))


# Allocator entry points: libc's family and mimalloc's (ringway links mimalloc as its
# global allocator, which valgrind's malloc replacement - and so dhat - cannot see).
_ALLOC = re.compile(
    r"^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|valloc"
    r"|mi_(malloc|zalloc|calloc|realloc|rezalloc|recalloc)(_aligned(_at)?)?"
    r"|mi_(new|heap_malloc|heap_zalloc)\w*)$")
_INTERNAL = re.compile(r"^(_?mi_|__libc_|_int_|malloc|calloc|realloc|memalign|posix_memalign|aligned_alloc)")


def callgrind_allocs(path):
    """Count calls into allocator entry points made from outside the allocator.

    Exact: callgrind counts every call. Calls between allocator functions (mi_malloc
    calling mi_heap_malloc, realloc calling malloc) are skipped so one allocation
    counts once."""
    names, fn, cfn, counts, callers = {}, None, None, {}, {}

    def resolve(spec):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", spec)
        if not m:
            return spec.strip()
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        return names.get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = resolve(line[3:])
            elif line.startswith("cfn="):
                cfn = resolve(line[4:])
            elif line.startswith("calls=") and cfn is not None:
                n = int(line[6:].split()[0])
                base = cfn.split("'")[0]
                if _ALLOC.match(base) and not (fn and _INTERNAL.match(fn.split("'")[0])):
                    counts[base] = counts.get(base, 0) + n
                    callers[fn] = callers.get(fn, 0) + n
                cfn = None
    print(json.dumps({"total": sum(counts.values()), "by_function": counts, "by_caller": callers}))


def alloc_diff(run_dir, lo, hi):
    """Allocations per request from two callgrind runs (N=lo and N=hi requests)."""
    def load(n):
        with open(f"{run_dir}/allocs.{n}.res") as f:
            allocs, reqs = map(int, f.read().split())
        with open(f"{run_dir}/allocs.{n}.json") as f:
            j = json.load(f)
            return allocs, reqs, j["by_function"], j.get("by_caller", {})
    alo, rlo, blo, clo = load(lo)
    ahi, rhi, bhi, chi = load(hi)
    d = max(rhi - rlo, 1)
    # Callers whose allocation count grows with requests: the per-request allocation sites.
    per_caller = {k: round((chi.get(k, 0) - clo.get(k, 0)) / d, 3) for k in set(chi) | set(clo)}
    per_caller = dict(sorted(((k, v) for k, v in per_caller.items() if v >= 0.01),
                             key=lambda kv: -kv[1]))
    print(json.dumps({
        "allocs_lo": alo, "allocs_hi": ahi, "reqs_lo": rlo, "reqs_hi": rhi,
        "per_request": (ahi - alo) / d,
        "by_function": {k: round((bhi.get(k, 0) - blo.get(k, 0)) / d, 3)
                        for k in sorted(set(bhi) | set(blo))},
        "by_caller": per_caller}))


def perf_allocs(path, reqs, proxy):
    """Allocation calls per request from `perf stat -x,` uprobe counts."""
    counts = {}
    with open(path) as f:
        for line in f:
            t = line.strip().split(",")
            if len(t) >= 3 and ":" in t[2]:
                n = int(t[0]) if t[0].isdigit() else 0  # "<not counted>" -> 0
                counts[t[2].split(":", 1)[1]] = n
    reqs = max(int(reqs), 1)
    total = sum(counts.values())
    print(json.dumps({"proxy": proxy, "requests": reqs, "allocs": total,
                      "per_request": total / reqs,
                      "by_function": {k: round(v / reqs, 3) for k, v in sorted(counts.items())}}))


def show(kind):
    """One progress line for a JSON row on stdin."""
    r = json.loads(sys.stdin.read())
    if kind == "row":
        p99 = (r["p99_us"] or 0) / 1e3
        print(f"    rps={r['rps']:.0f} p99={p99:.2f}ms errors={r['errors']} "
              f"cpu/req user={r['cpu_user_us']:.2f} sys={r['cpu_sys_us']:.2f} µs "
              f"(proxy busy {r['cpu_util_pct']:.0f}% of a core)")
    elif kind == "allocs":
        print(f"    {r['per_request']:.2f} allocations/req ({r['allocs']} / {r['requests']}): "
              f"{r['by_function']}")
    else:
        top = ", ".join(f"{t['syscall']} {t['per_request']:.2f}" for t in r["top"][:5])
        print(f"    {r['per_request']:.2f} syscalls/req; top: {top}")


def main(argv):
    cmds = {
        "freeports": freeports, "cpu": cpu, "rss": rss, "wrk-json": wrk_json, "get": get,
        "seq-client": seq_client, "strace-summary": strace_summary,
        "callgrind-allocs": callgrind_allocs, "alloc-diff": alloc_diff,
        "show": show, "perf-allocs": perf_allocs,
    }
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
