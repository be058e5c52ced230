# syntax=docker/dockerfile:1
# The edge: the official nginx image plus consul-template, running the same
# nginx/ files as `make up` (nginx.conf.ctmpl, consul-template.hcl, reload.sh)
# through nginx/docker-entrypoint.sh. Build context: the repository root.
# docker-compose.yml's one-shot consul-acl runs consul/acl-bootstrap.sh from
# this image too (it needs bash, curl and sed, all here).
#   docker build -f docker/edge.Dockerfile -t audiomill/edge .

ARG GO_VERSION=1.26
ARG NGINX_IMAGE=nginx:stable

# ---------------------------------------------------------------- consul-template
# The version tools/go.mod pins, built as scripts/install.sh builds it (GOWORK=off).
FROM golang:${GO_VERSION}-bookworm AS consul-template
WORKDIR /src/tools
COPY tools/go.mod tools/go.sum ./
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly GONOSUMDB=github.com/hashicorp/consul-awsauth
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /out/consul-template github.com/hashicorp/consul-template

# ---------------------------------------------------------------- edge
FROM ${NGINX_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=consul-template /out/consul-template /usr/local/bin/consul-template
# consul-template.hcl names its files relative to the working directory:
# nginx/… (the templates) and var/nginx/… (what is rendered, nginx's prefix).
WORKDIR /srv/edge
COPY nginx/ nginx/
COPY consul/acl-bootstrap.sh consul/
RUN install -d -o nginx -g nginx var/nginx
ENV EDGE_HOST=0.0.0.0 EDGE_PORT=8080 \
    EDGE_ERROR_LOG=/dev/stderr EDGE_ACCESS_LOG=/dev/stdout \
    CONSUL_HTTP_ADDR=consul:8500
USER nginx
EXPOSE 8080 8443
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/bash", "nginx/docker-entrypoint.sh"]
