#!/bin/sh
# Run by consul-template after it renders the edge config (nginx/consul-template.hcl).
# Tests the freshly rendered file with `nginx -t`; only a config that passes
# becomes the live one and is reloaded into a running nginx. A config that fails
# is logged and the running one stays. Always exits 0: a non-zero exit would
# stop consul-template, and with it every later update of the edge.
#
# Environment (scripts/lib.sh edge_env sets it for `make up`):
#   EDGE_PREFIX     nginx -p prefix (temp dirs, relative paths)
#   EDGE_RENDERED   what consul-template rendered
#   EDGE_CONF       the live config nginx runs with
#   EDGE_PID        nginx's pid file (default $EDGE_PREFIX/nginx.pid)
#   EDGE_ERROR_LOG  nginx's error log, also for its start-up messages (optional)
set -u

prefix=${EDGE_PREFIX:?EDGE_PREFIX is not set}
rendered=${EDGE_RENDERED:?EDGE_RENDERED is not set}
conf=${EDGE_CONF:?EDGE_CONF is not set}
pidfile=${EDGE_PID:-$prefix/nginx.pid}

log() { printf 'edge reload: %s\n' "$*" >&2; }

set -- -p "$prefix"
if [ -n "${EDGE_ERROR_LOG:-}" ]; then
	set -- "$@" -e "$EDGE_ERROR_LOG"
fi

if ! out=$(nginx -t -q "$@" -c "$rendered" 2>&1); then
	log "nginx -t rejected $rendered; the running config stays"
	printf '%s\n' "$out" >&2
	exit 0
fi

if ! { cp "$rendered" "$conf.tmp" && mv -f "$conf.tmp" "$conf"; }; then
	log "could not install $conf; the running config stays"
	exit 0
fi

if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	if nginx -s reload "$@" -c "$conf"; then
		log "config updated and nginx reloaded"
	else
		log "nginx -s reload failed"
	fi
else
	log "config updated (nginx not running, nothing to reload)"
fi
exit 0
