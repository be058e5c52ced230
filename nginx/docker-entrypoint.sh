#!/usr/bin/env bash
# The edge in a container (docker/edge.Dockerfile, docker-compose.yml): what
# scripts/edge.sh start does for `make up`, with the same nginx/ files.
#   1. render nginx/nginx.conf.ctmpl once; nginx/reload.sh runs `nginx -t`
#      and installs the config only if it passes;
#   2. start nginx in the foreground (`daemon off`);
#   3. run consul-template, which re-renders on every change in Consul and
#      reloads nginx through nginx/reload.sh.
# If nginx or consul-template exits, the other is stopped and the container
# exits (its restart policy brings it back). SIGTERM/SIGINT: consul-template
# stops, nginx finishes its requests (SIGQUIT).
#
# Environment (docker/edge.Dockerfile sets the defaults):
#   CONSUL_HTTP_ADDR   Consul's HTTP API (consul:8500)
#   CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN   consul-template's Consul ACL
#                      token, a file holding it or the token (docker-compose.yml:
#                      the file /run/secrets/consul_edge_token); consul-template
#                      reads them itself
#   EDGE_HOST, EDGE_PORT, EDGE_MAX_BODY, EDGE_LOGIN_RATE, EDGE_LOGIN_BURST,
#   EDGE_CONN_PER_CLIENT, EDGE_HEADER_TIMEOUT, EDGE_BODY_TIMEOUT,
#   EDGE_UPSTREAM_TIMEOUT, EDGE_SERVICE_TAG, EDGE_ERROR_LOG, EDGE_ACCESS_LOG,
#   EDGE_TLS_CERT, EDGE_TLS_KEY, EDGE_TLS_PORT   as for `make up` (docs/configuration.md;
#                      TLS: docker-compose.tls.yml, docs/operations.md)
#   EDGE_PREFIX, EDGE_CONF, EDGE_PID   nginx's prefix, live config and pid file
#                      (default: under var/nginx beside nginx/)
set -euo pipefail

# consul-template.hcl names its files relative to the directory holding
# nginx/ and var/.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

export EDGE_PREFIX="${EDGE_PREFIX:-$root/var/nginx}"
export EDGE_RENDERED="$root/var/nginx/nginx.conf.rendered" # the hcl's destination
export EDGE_CONF="${EDGE_CONF:-$EDGE_PREFIX/nginx.conf}"
export EDGE_PID="${EDGE_PID:-$EDGE_PREFIX/nginx.pid}"
export EDGE_ERROR_LOG="${EDGE_ERROR_LOG:-/dev/stderr}"
consul_addr="${CONSUL_HTTP_ADDR:-consul:8500}"
consul_addr="${consul_addr#http://}"

log() { printf 'edge: %s\n' "$*" >&2; }

# TLS: both files or neither, and readable (nginx -t would fail less clearly).
if [[ -n ${EDGE_TLS_CERT:-} || -n ${EDGE_TLS_KEY:-} ]]; then
	for v in EDGE_TLS_CERT EDGE_TLS_KEY; do
		if [[ -z ${!v:-} || ! -r ${!v} ]]; then
			log "$v=${!v:-} is not a readable file: TLS needs both EDGE_TLS_CERT and EDGE_TLS_KEY"
			exit 1
		fi
	done
fi

# The token file, when one is named, is readable: fail here naming it, not
# in consul-template. (Without a token the agent's default deny shows an
# empty catalog, and every route would render as the 503 fallback.)
if [[ -n ${CONSUL_HTTP_TOKEN_FILE:-} && ! -r $CONSUL_HTTP_TOKEN_FILE ]]; then
	log "CONSUL_HTTP_TOKEN_FILE=$CONSUL_HTTP_TOKEN_FILE is not a readable file"
	exit 1
fi

ct=(consul-template -config nginx/consul-template.hcl -consul-addr "$consul_addr")

mkdir -p "$root/var/nginx" "$EDGE_PREFIX"
rm -f "$EDGE_RENDERED" "$EDGE_PID"

log "rendering nginx/nginx.conf.ctmpl from Consul at $consul_addr"
"${ct[@]}" -once </dev/null
if ! cmp -s "$EDGE_RENDERED" "$EDGE_CONF"; then
	log "the rendered config fails nginx -t (see above); not starting"
	exit 1
fi

nginx -p "$EDGE_PREFIX" -e "$EDGE_ERROR_LOG" -c "$EDGE_CONF" -g 'daemon off;' &
nginx_pid=$!
"${ct[@]}" </dev/null &
ct_pid=$!
log "nginx (pid $nginx_pid) on ${EDGE_HOST:-127.0.0.1}:${EDGE_PORT:-8080}; consul-template (pid $ct_pid) watching Consul"

stopping=
stop() {
	stopping=1
	kill -TERM "$ct_pid" 2>/dev/null || true
	kill -QUIT "$nginx_pid" 2>/dev/null || true
}
trap stop TERM INT

# Until either exits (or a signal arrives), then stop the other.
status=0
wait -n "$nginx_pid" "$ct_pid" || status=$?
if [[ -z $stopping ]]; then
	if kill -0 "$nginx_pid" 2>/dev/null; then
		log "consul-template exited (status $status); stopping nginx"
	else
		log "nginx exited (status $status); stopping consul-template"
	fi
	stop
	[[ $status -ne 0 ]] || status=1
else
	status=0
fi
wait "$nginx_pid" "$ct_pid" 2>/dev/null || true
exit "$status"
