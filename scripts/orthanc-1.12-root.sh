#!/usr/bin/env bash
# Makes a Debian trixie root holding Debian's Orthanc 1.12.x, for running the test suite and the benchmark
# against the Orthanc that people deploy today next to bookworm's 1.10.1. Run as root (debootstrap, chroot,
# bind mounts). Idempotent: an existing root is kept and only its mounts are checked.
#
#   scripts/orthanc-1.12-root.sh [ROOT]     default ROOT: /var/cache/stgcmt-orthanc-1.12, outside the
#                                          repository, so that cleaning the work tree never walks into
#                                          the bind mounts
#
# Then ORTHANC_BIN=scripts/orthanc-1.12 selects it for the harness (npm run test:orthanc-1.12 does this).
set -euo pipefail
root=${1:-${ORTHANC_ROOT:-/var/cache/stgcmt-orthanc-1.12}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/orthanc-1.12-root.sh: run as root (debootstrap and chroot need it)" >&2
  exit 1
fi
if [ ! -x "$root/usr/sbin/Orthanc" ]; then
  command -v debootstrap >/dev/null 2>&1 || { apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap; }
  mkdir -p "$root"
  # minbase plus Orthanc and what it depends on: about 400 MB, half a minute on a fast mirror.
  debootstrap --variant=minbase --include=orthanc trixie "$root" "$mirror"
fi
# Orthanc in the root must see the harness's temp dirs at the same paths (/dev/shm, /tmp), /dev for its
# random numbers, and /proc. The root shares the host's network, so loopback ports work as they are.
for dir in proc dev dev/shm tmp; do
  mkdir -p "$root/$dir"
  mountpoint -q "$root/$dir" || mount --bind "/$dir" "$root/$dir"
done
# sed reads to the end: head would close the pipe early, and under pipefail the SIGPIPE Orthanc may then get
# fails the script (seen once in 20 runs).
chroot "$root" /usr/sbin/Orthanc --version | sed -n 1p
