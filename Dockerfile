# m3u-proxy container image: `docker build -t m3u-proxy .` (or `podman build --format docker`,
# which keeps the HEALTHCHECK). Configuration is only the environment variables of the README.
# Stages: build (dev dependencies, tsc) → deps (production dependencies only) → the image.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# The image runs dist/src only; test/ and bench/ are not in the build context.
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
# WITH_RESOLVERS=false leaves out streamlink and yt-dlp (and their Python); WITH_VAAPI=false
# leaves out the VA-API drivers (Intel iHD, AMD/Mesa) that HW_ACCEL=vaapi|qsv needs with
# --device /dev/dri. Debian's ffmpeg itself is most of the image (README: image size).
ARG WITH_RESOLVERS=true
ARG WITH_VAAPI=true
RUN set -eux; \
    packages="ffmpeg tini ca-certificates"; \
    if [ "$WITH_RESOLVERS" = true ]; then packages="$packages streamlink yt-dlp"; fi; \
    if [ "$WITH_VAAPI" = true ]; then packages="$packages intel-media-va-driver mesa-va-drivers"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/lib/m3u-proxy/hls; \
    chown node:node /var/lib/m3u-proxy/hls
WORKDIR /app
ENV NODE_ENV=production \
    HLS_TEMP_DIR=/var/lib/m3u-proxy/hls \
    PROFILES_DIR=/app/profiles
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# Read at run time: the version (package.json) and the Redis Lua scripts.
COPY package.json ./
COPY src/coordination/lua ./src/coordination/lua
COPY profiles ./profiles
COPY grafana ./grafana
USER node
EXPOSE 8085
# /health with X-API-Token when API_TOKEN is set (env or .env); PORT/HOST as configured.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["node", "dist/src/healthcheck.js"]
# tini is PID 1: it forwards SIGTERM (drain, DRAIN_TIMEOUT) and SIGHUP to the primary and
# reaps orphans (an FFmpeg whose worker died), which node as PID 1 would not.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/index.js"]
