#!/usr/bin/env bash
# Installs the Debian packages s0 needs (now and for later layers: FUSE, OCI runtimes, egress,
# bench peers). Idempotent: installs only what is missing. As non-root it prints the apt line.
set -euo pipefail

# fuse (2.9.9) and not fuse3: fuse-native links libfuse.so.2 and uses the fuse 2 fusermount;
# the two packages exclude each other, so --no-install-recommends keeps fuse3 out. The lowlevel
# transport (native/fuse3.c) links libfuse3 and, as root, mounts without any fusermount.
PACKAGES=(
  fuse libfuse2                     # FUSE mounts (fuse-native transport)
  libfuse3-3 libfuse3-dev pkg-config  # FUSE mounts (lowlevel transport, the default)
  runc crun runsc                   # OCI runtimes
  nftables iproute2                 # egress control
  busybox-static mmdebstrap umoci skopeo  # templates
  fio b3sum restic rclone s3fs unison     # bench peers
  postgresql-common                 # psql client tools for operators (server is embedded)
  git ca-certificates
  attr rsync sqlite3 python3 python3-venv xz-utils  # real workloads in the FUSE tests
  docker-registry                   # a loopback registry in the template tests (test/templates)
  openssh-client curl               # `s0 ssh`, scp/sftp in the SSH tests; public URLs in the services tests
  containerd golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev  # containerd driver: daemon + its .proto files (and gogo/google imports)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-host: all ${#PACKAGES[@]} packages present"
  exit 0
fi

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host: not root; as root run:"
  echo "  apt-get update && $line"
  exit 0
fi

echo "setup-host: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-host: done"
