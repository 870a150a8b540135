#!/usr/bin/env bash
# Everything `make scenario` and `make test` need, done once and skipped when already done:
# host packages, the project's virtual environment, a running Docker engine, node images.
# Safe to run again at any time; prints one line per step it actually performs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup: run as root (the testbed creates namespaces and containers)" >&2; exit 2; }

# --- host packages: binary -> Debian package ------------------------------------------
declare -A need=(
  [dockerd]=docker.io [debootstrap]=debootstrap [ip]=iproute2 [tcpdump]=tcpdump
  [nft]=nftables [dot]=graphviz [tshark]=tshark [dig]=dnsutils [iperf3]=iperf3
  [openssl]=openssl [freeDiameterd]=freediameter [swanctl]=strongswan-swanctl [udhcpc]=udhcpc
  [ping]=iputils-ping
  [/usr/lib/ipsec/charon]=strongswan-charon
  # the tc-BPF IP-IP object, compiled on the host for the netns tests and benches
  [clang]=clang [/usr/include/bpf/bpf_helpers.h]=libbpf-dev
)
missing=()
for bin in "${!need[@]}"; do
  if [[ $bin == /* ]]; then [ -e "$bin" ] || missing+=("${need[$bin]}")
  else command -v "$bin" >/dev/null 2>&1 || missing+=("${need[$bin]}"); fi
done
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # charon's plugins for kernel-libipsec and the openssl crypto come with the extras.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" libcharon-extra-plugins \
    libstrongswan-standard-plugins >/var/log/testbed-apt.log 2>&1 \
    || { tail -n 20 /var/log/testbed-apt.log >&2; exit 1; }
fi
# Host strongSwan is only a tool for tests in host namespaces; it must never run as a service.
[ -x /usr/sbin/ipsec ] && command -v systemctl >/dev/null 2>&1 && systemctl disable --now strongswan-starter >/dev/null 2>&1 || true

# --- virtual environment ----------------------------------------------------------------
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing the project into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e . 2>&1 | grep -v -e '^WARNING: Location' -e '^$' || true
  touch .venv/.installed
fi

# --- Docker engine ----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (log: /var/log/testbed/dockerd.log)"
  mkdir -p /var/log/testbed
  # setsid: the engine must outlive this shell and the make that started it.
  setsid dockerd >/var/log/testbed/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not come up; see /var/log/testbed/dockerd.log" >&2; tail -n 20 /var/log/testbed/dockerd.log >&2; exit 1; }
fi

# --- node images (built only when missing or their inputs changed) -----------------------
.venv/bin/testbed images
