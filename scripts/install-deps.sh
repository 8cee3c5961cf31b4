#!/bin/sh
# Installs what beaconrt needs to build, test and run on Debian 12, idempotently:
# apt-get runs only when a package is missing. Run as root (or with sudo available).
set -eu
PKGS="build-essential cmake pkg-config git ca-certificates
      libjansson-dev libcmocka-dev libmicrohttpd-dev libsodium-dev libpcre2-dev libutf8proc-dev
      libprotobuf-c-dev protobuf-c-compiler
      openmpi-bin libopenmpi-dev
      python3 python3-numpy"
# extra packages for the tests (scripts/test.sh passes --slurm): a Slurm cluster (tests/slurm), and
# curl and a Python venv for the official openai client (tests/serve), clang and its libFuzzer
# runtime for the fuzz harnesses (tests/fuzz)
if [ "${1:-}" = "--slurm" ]; then
    PKGS="$PKGS slurmctld slurmd slurm-client munge procps iproute2 curl python3-venv clang libclang-rt-14-dev"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-deps: installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
