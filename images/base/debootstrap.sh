#!/usr/bin/env bash
# Build the node base image without a registry: debootstrap a minimal Debian into a
# scratch folder, add the pinned Python wheels, and `docker import` it as TAG.
# Used when `docker pull` of a Debian base fails (see ../../../shared/ENVIRONMENT.md).
set -euo pipefail
tag=${1:?usage: debootstrap.sh TAG}
here=$(cd "$(dirname "$0")" && pwd)
suite=${TESTBED_DEBIAN_SUITE:-bookworm}

# The mirror the host's own apt uses, so the image comes from wherever the host may reach.
mirror=${TESTBED_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hsoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(grep -hsoE '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]+' /etc/apt/sources.list | head -n1 | awk '{print $NF}')
fi
[ -n "$mirror" ] || { echo "debootstrap.sh: no Debian mirror found in the host's apt sources; set TESTBED_DEBIAN_MIRROR" >&2; exit 2; }

root=$(mktemp -d /var/tmp/testbed-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
pkgs=$(grep -vE '^\s*(#|$)' "$here/packages.txt" | paste -sd, -)
echo "debootstrap $suite from $mirror into $root"
debootstrap --variant=minbase --include="$pkgs" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 30 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# Pinned wheels for the node's python3 (binary only: the node has no compiler).
pyver=$(chroot "$root" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
arch=$(uname -m)
plats=()
for p in manylinux_2_34 manylinux_2_28 manylinux_2_17 manylinux2014 manylinux1; do plats+=(--platform "${p}_${arch}"); done
python3 -m pip install --quiet --only-binary=:all: "${plats[@]}" \
  --python-version "$pyver" --implementation cp \
  --target "$root/usr/local/lib/python3/dist-packages" -r "$here/requirements.txt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
# charon refuses to start while a stale pid file exists; the image ships none.
rm -f "$root"/var/run/charon.pid

tar -C "$root" -c . | docker import \
  --change 'ENV PYTHONPATH=/opt/testbed:/usr/local/lib/python3/dist-packages' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["sleep", "infinity"]' \
  - "$tag" >/dev/null
echo "built $tag"
