#!/usr/bin/env bash
# systemd/rolld.service passes `systemd-analyze verify` without a word, and
# makes the choices rolld depends on (Type=notify, KillMode=process, ...).
#
# systemd-analyze checks that ExecStart='s program exists and that the
# Documentation= man pages resolve, so it runs on a copy whose /usr/bin/rolld
# is the built binary ($ROLLD), with MANPATH on this tree's man/ pages. It
# prints problems (unknown keys, bad values) as warnings and still exits 0:
# any line that names the unit is a failure. Exits 77 when systemd-analyze is
# missing.
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROLLD=${ROLLD:-$TOP/build/rolld}
UNIT=$TOP/systemd/rolld.service

if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze not found (Debian package systemd)"
    exit 77
fi
if [ ! -x "$ROLLD" ]; then
    echo "FAIL: $ROLLD is not built"
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolld-unit.XXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
failed=0
pass() { echo "ok   - $*"; }
fail() {
    echo "FAIL - $*"
    failed=$((failed + 1))
}

# verify FILE: systemd-analyze verify, with the output in $WORK/verify.out;
# 0 when it exits 0 and says nothing about FILE
verify() {
    local man=(--man=no)
    if command -v man >/dev/null; then
        mkdir -p "$WORK/man/man1" "$WORK/man/man5"
        cp "$TOP/man/rolld.1" "$WORK/man/man1/"
        cp "$TOP/man/rolld.yaml.5" "$WORK/man/man5/"
        man=(--man=yes)
    fi
    MANPATH=$WORK/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${man[@]}" "$1" >"$WORK/verify.out" 2>&1
    local rc=$?
    [ "$rc" -eq 0 ] && ! grep -q "$(basename "$1")" "$WORK/verify.out"
}

mkdir -p "$WORK/unit"
sed "s|/usr/bin/rolld|$ROLLD|g" "$UNIT" >"$WORK/unit/rolld.service"
if verify "$WORK/unit/rolld.service"; then
    pass "systemd-analyze verify: no errors, no warnings"
else
    fail "systemd-analyze verify:"
fi
sed 's/^/    /' "$WORK/verify.out"

# the check itself sees a warning: an unknown key and a bad value
mkdir -p "$WORK/bad"
sed "s|/usr/bin/rolld|$ROLLD|g; s|^KillMode=process|KillMode=processes\nWatchdogSecs=30|" \
    "$UNIT" >"$WORK/bad/rolld.service"
if verify "$WORK/bad/rolld.service"; then
    fail "a unit with an unknown key and a bad KillMode passed the check"
else
    pass "a unit with an unknown key and a bad KillMode is caught ($(grep -c rolld.service "$WORK/verify.out") lines)"
fi

# the choices rolld's contract rests on, as systemd parsed them
# (systemd-analyze dump needs a running manager; these are read from the file,
# whose syntax verify has just accepted)
setting() {
    sed -n "s/^$1=//p" "$UNIT"
}
expect() {
    local key=$1 value=$2 got
    got=$(setting "$key" | tr '\n' '|')
    got=${got%|}
    if [ "$got" = "$value" ]; then pass "$key=$value"; else fail "$key: expected '$value', got '$got'"; fi
}
expect Type notify
expect NotifyAccess main
expect ExecStart "/usr/bin/rolld run --config /etc/rolld/rolld.yaml"
expect ExecReload '/usr/bin/rolld run --config /etc/rolld/rolld.yaml --check|/bin/kill -HUP $MAINPID'
expect Restart on-failure
expect KillMode process
expect OOMPolicy continue
expect StateDirectory rolld
expect ConfigurationDirectory rolld
expect LogsDirectory rolld
expect WantedBy multi-user.target
watchdog=$(setting WatchdogSec)
if [[ $watchdog =~ ^[0-9]+s$ ]] && [ "${watchdog%s}" -ge 10 ]; then
    pass "WatchdogSec=$watchdog"
else
    fail "WatchdogSec: expected at least 10s, got '$watchdog'"
fi
for key in ProtectSystem ProtectHome NoNewPrivileges RestrictAddressFamilies; do
    if [ -n "$(setting "$key")" ]; then pass "$key=$(setting "$key")"; else fail "$key is not set"; fi
done
# PrivateTmp would be removed under replicas that outlive the agent;
# ProtectClock's implied DeviceAllow= would shut them out of the GPUs
for key in PrivateTmp PrivateDevices ProtectClock MemoryDenyWriteExecute DynamicUser; do
    if [ -z "$(setting "$key")" ]; then pass "$key is not set"; else fail "$key=$(setting "$key") is set"; fi
done
# every sandboxing option left off says why, in a comment
for key in PrivateTmp PrivateDevices ProtectClock MemoryDenyWriteExecute RestrictNamespaces SystemCallFilter; do
    if grep -q "^# $key= is left off: " "$UNIT"; then pass "the unit says why $key= is off"; else fail "no comment says why $key= is off"; fi
done
# the messages the agent sends are documented in the unit
for message in READY=1 STATUS= WATCHDOG=1 RELOADING=1 STOPPING=1; do
    if grep -q "^#   $message" "$UNIT"; then pass "the unit documents $message"; else fail "the unit does not document $message"; fi
done

if command -v systemd-analyze >/dev/null &&
    systemd-analyze security --offline=yes "$WORK/unit/rolld.service" >"$WORK/security.out" 2>&1; then
    echo "figure: $(grep -o 'Overall exposure level.*' "$WORK/security.out")"
fi

echo "$failed failed"
[ "$failed" -eq 0 ]
