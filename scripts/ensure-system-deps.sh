#!/usr/bin/env bash
# Installs what the tests need and a fresh Debian box lacks, or stops with a message naming
# the packages when it cannot. command → Debian package:
#   ffmpeg, ffprobe → ffmpeg · redis-server → redis-server · prometheus, promtool → prometheus
#   streamlink → streamlink · yt-dlp → yt-dlp
# With --container (npm run test:container, CI), also what the container test needs:
#   podman → podman · runc → runc · debootstrap → debootstrap · podman-compose → podman-compose
#   /usr/lib/podman/netavark → netavark, aardvark-dns (compose networks with service names)
set -euo pipefail
declare -A need=(
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [redis-server]=redis-server
  [prometheus]=prometheus [promtool]=prometheus
  [streamlink]=streamlink [yt-dlp]=yt-dlp
)
if [ "${1-}" = --container ]; then
  need+=(
    [podman]=podman [runc]=runc [debootstrap]=debootstrap [podman-compose]=podman-compose
    [/usr/lib/podman/netavark]=netavark [/usr/lib/podman/aardvark-dns]=aardvark-dns
  )
fi
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 && continue
  pkg=${need[$cmd]}
  [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "Installing missing packages with sudo: ${missing[*]}"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
  fi
fi
echo "The tests need these packages, which are not installed: ${missing[*]}" >&2
echo "Install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run the tests again." >&2
exit 1
