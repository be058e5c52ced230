# syntax=docker/dockerfile:1
# One image per audiomill service, all from this file (docker-compose.yml sets
# SERVICE):
#   docker build --build-arg SERVICE=gateway -t audiomill/gateway .
#
# The build stage runs scripts/build.sh, the same build `make build` and
# `make up` run, over the whole go.work workspace; the runtime stage is
# debian:bookworm-slim with the binary, curl for the healthcheck (GET /readyz),
# CA certificates and a non-root user. The converter's runtime adds ffmpeg.
# No secret is baked in: docker-compose.yml hands them over as files in
# /run/secrets (docker/entrypoint.sh).

ARG GO_VERSION=1.26
ARG DEBIAN_VERSION=bookworm
# auth, filestorage, gateway, converter or notifier (required).
ARG SERVICE

# ---------------------------------------------------------------- build
FROM golang:${GO_VERSION}-${DEBIAN_VERSION} AS build
ARG SERVICE
# Stamped into main.version (.git is not in the build context).
ARG VERSION=docker
WORKDIR /src
COPY . .
# Static binary: the runtime needs no libc of the build's version.
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    VERSION="$VERSION" AUDIOMILL_VAR_DIR=/out scripts/build.sh "$SERVICE"

# ---------------------------------------------------------------- runtime
FROM debian:${DEBIAN_VERSION}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 audiomill \
    && useradd --system --uid 10001 --gid audiomill --home-dir /var/lib/audiomill --create-home --shell /usr/sbin/nologin audiomill \
    && install -d -o audiomill -g audiomill /var/lib/audiomill/data
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/audiomill-entrypoint

# What each service needs besides the base; selected by SERVICE below.
FROM runtime AS runtime-auth
FROM runtime AS runtime-filestorage
FROM runtime AS runtime-gateway
FROM runtime AS runtime-notifier
FROM runtime AS runtime-converter
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- image
FROM runtime-${SERVICE}
ARG SERVICE
ARG VERSION=docker
LABEL org.opencontainers.image.title="audiomill-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/audiomill/audiomill"
COPY --from=build /out/bin/${SERVICE} /usr/local/bin/${SERVICE}
ENV AUDIOMILL_SERVICE=${SERVICE} BIND_ADDR=0.0.0.0 ADVERTISE_ADDR=auto
USER audiomill
WORKDIR /var/lib/audiomill
ENTRYPOINT ["/usr/local/bin/audiomill-entrypoint"]
