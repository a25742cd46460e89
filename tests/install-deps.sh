#!/usr/bin/env bash
# Installs the Debian packages rolld needs, only those that are missing.
#   tests/install-deps.sh build   what building and running rolld needs
#   tests/install-deps.sh test    that plus what the test suite needs
set -euo pipefail

build_packages=(build-essential cmake pkg-config libyaml-dev libjansson-dev libsystemd-dev
                libcurl4-openssl-dev libmicrohttpd-dev libevent-dev libhttp-parser-dev libgit2-dev haproxy curl git
                openssh-client gpg gpgv)
test_packages=(libcmocka-dev clang libclang-rt-14-dev nodejs npm wrk jq prometheus systemd dpkg-dev time)

packages=("${build_packages[@]}")
if [ "${1:-build}" = test ]; then
    packages+=("${test_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian's packages; take those if they work
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}")
    missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
