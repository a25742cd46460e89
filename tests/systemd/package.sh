#!/usr/bin/env bash
# package: the install rules and the .deb. In a temp dir: configure a build
# with -DCMAKE_INSTALL_PREFIX=/usr (as the .deb is built), build it, then
#   - `cmake --install` into a DESTDIR: every file where it belongs;
#   - `cpack -G DEB`: `dpkg-deb -c` lists those paths (and not the example
#     model server), `dpkg-deb -I` shows the Depends, the conffile and
#     maintainer scripts that start nothing;
#   - the .deb extracted (never installed: dpkg -i would change this machine):
#     its rolld runs, finds the packaged policies by its compiled-in path,
#     checks the packaged rolld.yaml, and its unit is systemd/rolld.service;
#   - a tree configured for another prefix installs a unit naming that
#     prefix's binary and config, and cpack refuses to make a .deb of it.
# Exits 77 when cmake, cpack or dpkg-deb is missing. ROLLD_PACKAGE_JOBS: the
# build's parallelism (default: every CPU).
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
for tool in cmake cpack dpkg-deb; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool not found (cmake: cmake, cpack; dpkg-deb: dpkg)"
        exit 77
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolld-package.XXXX") || exit 1
failed=0
cleanup() {
    if [ "$failed" -eq 0 ] && [ -z "${PACKAGE_KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        echo "kept $WORK"
    fi
}
trap cleanup EXIT
pass() { echo "ok   - $*"; }
fail() {
    echo "FAIL - $*"
    failed=$((failed + 1))
}
check() {
    local description=$1
    shift
    if "$@"; then pass "$description"; else fail "$description"; fi
}
not() { ! "$@"; }
quiet() { "$@" >/dev/null 2>&1; }
step() {
    local description=$1 logfile=$WORK/$2.log
    shift 2
    local start=$SECONDS
    if "$@" >"$logfile" 2>&1; then
        pass "$description ($((SECONDS - start)) s)"
    else
        fail "$description; the end of $logfile:"
        tail -n 30 "$logfile" | sed 's/^/    /'
        exit 1
    fi
}

BUILD=$WORK/build
JOBS=${ROLLD_PACKAGE_JOBS:-$(nproc 2>/dev/null || echo 2)}
step "configure with prefix /usr" configure \
    cmake -S "$TOP" -B "$BUILD" -DCMAKE_INSTALL_PREFIX=/usr -DROLLD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release
step "build (-j$JOBS)" build cmake --build "$BUILD" -j "$JOBS"

# ---- cmake --install ----
DEST=$WORK/destdir
step "cmake --install into a DESTDIR" install env DESTDIR="$DEST" cmake --install "$BUILD"
expected=(
    usr/bin/rolld
    usr/lib/systemd/system/rolld.service
    etc/rolld/rolld.yaml
    usr/share/rolld/policies/production.yaml
    usr/share/rolld/policies/development.yaml
    usr/share/rolld/policies/production-gated.yaml
    usr/share/rolld/schema/service.schema.json
    usr/share/rolld/schema/rolld.schema.json
    usr/share/man/man1/rolld.1
    usr/share/man/man5/rolld.yaml.5
    usr/share/bash-completion/completions/rolld
)
missing=()
for f in "${expected[@]}"; do
    [ -f "$DEST/$f" ] || missing+=("$f")
done
check "cmake --install: ${#expected[@]} files in place${missing[*]:+; missing: ${missing[*]}}" test ${#missing[@]} -eq 0
check "cmake --install: rolld is executable" test -x "$DEST/usr/bin/rolld"
check "cmake --install: the unit is systemd/rolld.service (prefix /usr)" \
    cmp -s "$DEST/usr/lib/systemd/system/rolld.service" "$TOP/systemd/rolld.service"
check "cmake --install: rolld.yaml is examples/config/rolld.yaml" \
    cmp -s "$DEST/etc/rolld/rolld.yaml" "$TOP/examples/config/rolld.yaml"

# ---- cpack -G DEB ----
step "cpack -G DEB" cpack bash -c 'cd "$1" && cpack -G DEB' _ "$BUILD"
deb=$(ls "$BUILD"/*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
    fail "no .deb in $BUILD"
    exit 1
fi
pass "package: $(basename "$deb")"
dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./||' >"$WORK/contents"
missing=()
for f in "${expected[@]}"; do
    grep -qxF "$f" "$WORK/contents" || missing+=("$f")
done
check "dpkg-deb -c: the ${#expected[@]} files${missing[*]:+; missing: ${missing[*]}}" test ${#missing[@]} -eq 0
check "dpkg-deb -c: not the example model server" not grep -q 'model-server' "$WORK/contents"
check "dpkg-deb -c: only /usr and /etc" test -z "$(grep -Ev '^(usr|etc)(/|$)|^$' "$WORK/contents")"
echo "    files: $(grep -vc '/$' "$WORK/contents")"

dpkg-deb -I "$deb" >"$WORK/info"
field() { dpkg-deb -f "$deb" "$1"; }
check_eq() {
    if [ "$2" = "$3" ]; then pass "$1: $3"; else fail "$1: expected '$2', got '$3'"; fi
}
check_eq "Package" rolld "$(field Package)"
check_eq "Version" 0.1.0-1 "$(field Version)"
check "Maintainer is set ($(field Maintainer))" test -n "$(field Maintainer)"
check "Description is set ($(field Description | head -n 1))" test -n "$(field Description)"
depends=$(field Depends)
echo "    Depends: $depends"
# libgit2, libevent and libcurl are opened when first used, not linked:
# named by the build, not by dpkg-shlibdeps
wanted=(libc6 libyaml-0-2 libjansson4 libsystemd0 libcurl4 libhttp-parser2.9 libgit2-1.5 libevent-2.1-7
    haproxy openssh-client gpgv)
if command -v readelf >/dev/null && readelf -d "$BUILD/rolld" | grep -Eq 'libgit2|libcurl|libevent|libmicrohttpd'; then
    fail "rolld links a library it should open when first used: $(readelf -d "$BUILD/rolld" | grep -Eo 'lib(git2|curl|event|microhttpd)[^]]*' | tr '\n' ' ')"
fi
for p in "${wanted[@]}"; do
    check "Depends: $p" grep -Eq "(^|, )$p( |,|$)" <<<"$depends"
done

mkdir -p "$WORK/control"
dpkg-deb -e "$deb" "$WORK/control"
check "conffiles: /etc/rolld/rolld.yaml" grep -qxF /etc/rolld/rolld.yaml "$WORK/control/conffiles"
for script in postinst postrm; do
    if [ -f "$WORK/control/$script" ]; then
        check "$script is executable" test -x "$WORK/control/$script"
        check "$script runs daemon-reload" grep -q 'systemctl --system daemon-reload' "$WORK/control/$script"
        # its commands, comments left out
        sed -e 's/#.*//' "$WORK/control/$script" >"$WORK/$script.commands"
        check "$script enables, starts or restarts nothing" \
            not grep -Eq '(systemctl|deb-systemd-(helper|invoke)).*(enable|start|restart)|invoke-rc.d|update-rc.d' \
            "$WORK/$script.commands"
    fi
done
check "no preinst or prerm" test ! -e "$WORK/control/preinst" -a ! -e "$WORK/control/prerm"

# ---- the .deb's contents, extracted (not installed) ----
ROOT=$WORK/root
dpkg-deb -x "$deb" "$ROOT"
version=$("$ROOT/usr/bin/rolld" version 2>&1)
check_eq "the packaged rolld runs: rolld version" "rolld 0.1.0" "$version"
check "the packaged rolld looks for policies in /usr/share/rolld/policies" \
    grep -q /usr/share/rolld/policies "$ROOT/usr/bin/rolld"
check "the packaged rolld.yaml passes rolld run --check" \
    quiet "$ROOT/usr/bin/rolld" run --config "$ROOT/etc/rolld/rolld.yaml" --check
check "the packaged policies plan the examples" \
    quiet env ROLLD_POLICY_DIR="$ROOT/usr/share/rolld/policies" "$ROOT/usr/bin/rolld" plan \
    "$TOP/examples/services/v2" --against "$TOP/examples/services/v1" --policies "$ROOT/usr/share/rolld/policies"
check "the packaged unit is systemd/rolld.service" \
    cmp -s "$ROOT/usr/lib/systemd/system/rolld.service" "$TOP/systemd/rolld.service"
if command -v groff >/dev/null; then
    for page in man1/rolld.1 man5/rolld.yaml.5; do
        warnings=$(groff -man -Tutf8 -ww "$ROOT/usr/share/man/$page" 2>&1 >/dev/null)
        check "the packaged $page renders without warnings${warnings:+: $warnings}" test -z "$warnings"
    done
fi
check "the packaged completion loads" \
    bash -c 'source "$1" && complete -p rolld >/dev/null' _ "$ROOT/usr/share/bash-completion/completions/rolld"

# ---- another prefix: the installed unit names that prefix ----
step "configure with prefix /usr/local" configure-local \
    cmake -S "$TOP" -B "$WORK/build-local" -DCMAKE_INSTALL_PREFIX=/usr/local -DROLLD_TESTS=OFF
unit=$WORK/build-local/systemd/rolld.service
check_eq "prefix /usr/local: ExecStart" "/usr/local/bin/rolld run --config /usr/local/etc/rolld/rolld.yaml" \
    "$(sed -n 's/^ExecStart=//p' "$unit")"
check "prefix /usr/local: no /usr/bin/rolld nor /etc/rolld/rolld.yaml left in the unit" \
    not grep -Eq '/usr/bin/rolld|[^l]/etc/rolld/rolld.yaml' "$unit"

check "cpack -G DEB refuses the /usr/local tree" \
    not quiet bash -c 'cd "$1" && cpack -G DEB' _ "$WORK/build-local"

echo "$failed failed"
[ "$failed" -eq 0 ]
