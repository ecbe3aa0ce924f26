#!/usr/bin/env bash
# Makes the Dockerfile's base image locally, for machines that reach Debian's archive but no
# image registry (the development machine and CI). The result stands in for the official
# node:20-bookworm-slim: Debian 12 minbase (debootstrap) with this machine's Node 20 and npm in
# /usr/local, a user `node` (uid/gid 1000), docs/man/locales excluded from dpkg as in the slim
# images. It is tagged with the name the Dockerfile uses, so the Dockerfile stays the one users
# build against the real image.
#
#   scripts/container/base-image.sh            # no-op when the image exists
#   FORCE=1 scripts/container/base-image.sh    # rebuild it (the rootfs cache is reused)
#
# The debootstrap rootfs (3.5 min to make on the development machine) is cached as a tarball
# in $M3U_CONTAINER_CACHE (default /var/cache/m3u-proxy); delete it to fetch a fresh one.
set -euo pipefail

IMAGE=${BASE_IMAGE:-docker.io/library/node:20-bookworm-slim}
CACHE=${M3U_CONTAINER_CACHE:-/var/cache/m3u-proxy}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS_TAR="$CACHE/bookworm-minbase.tar"

if [ -z "${FORCE:-}" ] && podman image exists "$IMAGE"; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "base-image.sh needs root (debootstrap, chroot)" >&2; exit 1; }
node_bin=$(command -v node)
npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
[[ "$(node --version)" == v20.* ]] || { echo "Node 20 is needed on this machine (found $(node --version))" >&2; exit 1; }

work=$(mktemp -d /var/tmp/m3u-proxy-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$CACHE" "$rootfs"

if [ ! -s "$ROOTFS_TAR" ]; then
  echo "debootstrap --variant=minbase bookworm (cached afterwards in $ROOTFS_TAR)"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # What the slim images leave out: package caches, lists, docs, man pages, locales.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  tar -C "$rootfs" -cf "$ROOTFS_TAR.part" . && mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
  echo "rootfs made in $((SECONDS - start)) s"
else
  tar -C "$rootfs" -xf "$ROOTFS_TAR"
fi

# Node and npm where the official image has them, and its `node` user.
install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# A machine whose HTTPS goes through an intercepting proxy trusts it through NODE_EXTRA_CA_CERTS;
# hand the same bundle to Node in the image, or `npm ci` in the build cannot reach the registry.
ca_env=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -s "$NODE_EXTRA_CA_CERTS" ]; then
  install -m 0644 "$NODE_EXTRA_CA_CERTS" "$rootfs/usr/local/etc/host-ca-certificates.crt"
  ca_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/etc/host-ca-certificates.crt')
fi

tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["node"]' \
  --change 'ENV NODE_VERSION='"$(node --version | cut -c2-)" "${ca_env[@]}" \
  --message "debootstrap minbase bookworm + Node $(node --version) (stand-in for the official image)" \
  - "$IMAGE" >/dev/null
echo "made $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
