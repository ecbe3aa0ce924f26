#!/usr/bin/env bash
# Runs compose.yaml's proxy + Redis with podman-compose on a machine without a registry, and
# checks that the proxy reaches Redis by its service name. Not part of CI (minutes, and it needs
# the stand-in images); the README says what it showed.
#
#   scripts/container/compose-check.sh
#
# Stand-ins, made locally when missing: the base image (base-image.sh), m3u-proxy:latest (the
# Dockerfile built on it) and redis:7.4-alpine (Debian's redis-server on the same base; the
# compose file's command line is what runs). podman-compose 1.0.3 (Debian 12) has no profiles:
# the services are named on its command line instead of `--profile redis`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/scripts/container/containers.conf"
project=m3u-proxy-compose-check
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

bash scripts/container/base-image.sh
podman image exists localhost/m3u-proxy:latest ||
  podman build --format docker --runtime runc --network host -t localhost/m3u-proxy:latest .
if ! podman image exists docker.io/library/redis:7.4-alpine; then
  podman build --runtime runc --network host -t docker.io/library/redis:7.4-alpine -f - . <<'EOF'
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
USER redis
EOF
fi

compose() { podman-compose -p "$project" -f compose.yaml "$@"; }
# podman-compose 1.0.3's `down` leaves the project's volume and network behind.
cleanup() {
  compose down -t 5 >/dev/null 2>&1 || true
  podman volume rm "${project}_hls" >/dev/null 2>&1 || true
  podman network rm "${project}_default" >/dev/null 2>&1 || true
}
trap cleanup EXIT

API_TOKEN=$token REDIS_ENABLED=true PORT=18085 compose up -d m3u-proxy redis
echo "waiting for /health (published on 127.0.0.1:18085)"
for _ in $(seq 1 60); do
  health=$(curl -s -H "X-API-Token: $token" http://127.0.0.1:18085/health || true)
  case $health in *'"status":"healthy"'*) break ;; esac
  sleep 2
done
echo "$health"
case $health in
  *'"backend":"redis","ok":true'*) ;;
  *) podman logs "${project}_m3u-proxy_1" 2>&1 | tail -20; echo "FAIL: the proxy is not on Redis" >&2; exit 1 ;;
esac
# The image's HEALTHCHECK, run by hand (no systemd timers here); a loaded box may need a retry.
for try in 1 2 3 4 5; do
  if podman healthcheck run "${project}_m3u-proxy_1"; then echo "HEALTHCHECK passed (try $try)"; break; fi
  [ "$try" -lt 5 ] || { echo "FAIL: HEALTHCHECK" >&2; exit 1; }
  sleep 2
done
created=$(curl -s -X POST -H "X-API-Token: $token" -H 'Content-Type: application/json' \
  -d '{"url":"http://provider.example/live/1.ts"}' http://127.0.0.1:18085/streams)
echo "$created"
id=$(printf '%s' "$created" | sed -n 's/.*"stream_id":"\([0-9a-f]*\)".*/\1/p')
keys=$(podman exec "${project}_redis_1" redis-cli --scan --pattern "stream:$id*" | wc -l)
echo "redis keys for the stream: $keys"
[ "$keys" -ge 1 ] || { echo "FAIL: the stream is not in Redis" >&2; exit 1; }
echo "OK: compose proxy + redis"
