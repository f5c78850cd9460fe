#!/bin/sh
# Verifies systemd/ringway.service with `systemd-analyze verify` (and prints its security score).
# Works on a fresh Debian 12 container or VM with the `systemd` package installed: PID 1 need not
# be systemd. verify insists that ExecStart binaries exist, so it checks a temp copy whose
# /usr/local/bin/ringway points at an existing binary ($RINGWAY_BIN, the installed one, a cargo
# build, or /bin/true). Parse problems (unknown keys, bad values) only make verify print a line
# and exit 0, so any line naming the unit counts as an error too.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
unit="$here/ringway.service"

command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze missing (apt-get install -y systemd)" >&2; exit 2; }

bin=${RINGWAY_BIN:-}
if [ -z "$bin" ]; then
    for c in /usr/local/bin/ringway "$here/../target/release/ringway" "$here/../target/debug/ringway" /bin/true; do
        if [ -x "$c" ]; then bin=$c; break; fi
    done
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
sed "s|/usr/local/bin/ringway|$bin|g" "$unit" > "$tmp/ringway.service"

rc=0
out=$(cd "$tmp" && systemd-analyze verify --man=no "$tmp/ringway.service" 2>&1) || rc=$?
[ -n "$out" ] && printf '%s\n' "$out"
if [ "$rc" -ne 0 ] || printf '%s\n' "$out" | grep -q 'ringway\.service'; then
    echo "verify.sh: systemd-analyze verify found problems in ringway.service (rc=$rc)" >&2
    exit 1
fi
echo "verify.sh: ringway.service verified (ExecStart checked against $bin)"

# The exposure score is informative: --offline exists from systemd 250 (Debian 12 has 252).
score=$(systemd-analyze security --offline=true "$tmp/ringway.service" 2>/dev/null | grep 'Overall exposure level' || true)
[ -n "$score" ] && echo "verify.sh: $score"
exit 0
