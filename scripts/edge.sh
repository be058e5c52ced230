#!/usr/bin/env bash
# The edge: nginx, with consul-template re-rendering its config from Consul's
# passing instances (nginx/consul-template.hcl) and reloading it after
# `nginx -t` (nginx/reload.sh).
#   scripts/edge.sh start   render, start nginx (or reload it), start consul-template
#   scripts/edge.sh stop    stop both
# `make up` runs it; so do the e2e tests, each with its own AUDIOMILL_VAR_DIR,
# EDGE_PORT and EDGE_SERVICE_TAG. With EDGE_TLS_CERT and EDGE_TLS_KEY set the
# edge serves HTTPS on EDGE_TLS_PORT (docs/operations.md, "TLS at the edge").
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# tls_env: EDGE_TLS_CERT and EDGE_TLS_KEY are both set or both unset; set,
# they name readable files, passed on as absolute paths (nginx would read a
# relative one under its prefix).
tls_env() {
	local v
	[[ -n ${EDGE_TLS_CERT:-} || -n ${EDGE_TLS_KEY:-} ]] || return 0
	for v in EDGE_TLS_CERT EDGE_TLS_KEY; do
		[[ -n ${!v:-} ]] || die "$v is not set: TLS at the edge needs both EDGE_TLS_CERT and EDGE_TLS_KEY"
		[[ -f ${!v} && -r ${!v} ]] || die "$v=${!v}: no such readable file"
	done
	EDGE_TLS_CERT=$(realpath "$EDGE_TLS_CERT")
	EDGE_TLS_KEY=$(realpath "$EDGE_TLS_KEY")
	EDGE_TLS_PORT="${EDGE_TLS_PORT:-8443}"
	if ! [[ $EDGE_TLS_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$EDGE_TLS_PORT < 1 || 10#$EDGE_TLS_PORT > 65535)); then
		die "EDGE_TLS_PORT=$EDGE_TLS_PORT is not a TCP port"
	fi
	export EDGE_TLS_CERT EDGE_TLS_KEY EDGE_TLS_PORT
}

# start: render once and test (nginx/reload.sh runs `nginx -t` and installs
# the config), start nginx or let it reload, then keep consul-template running.
start() {
	local ct ctlog
	ensure_dirs
	edge_env
	tls_env
	# consul-template.hcl names its files relative to the directory holding
	# nginx/ and var/: the checkout, or a test's directory (AUDIOMILL_VAR_DIR).
	cd "$(dirname "$VAR_DIR")"
	[[ -f nginx/nginx.conf.ctmpl ]] || die "no nginx/ beside ${VAR_DIR}"
	ct=$(consul_template_bin)
	need_tool "$ct" consul-template
	command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || die "nginx is not installed; run scripts/install.sh"
	PATH="$PATH:/usr/sbin"
	ctlog=$(logfile consul-template)
	# consul-template's Consul ACL token: the stack's read-only token edge;
	# in a var/ without tokens (an e2e test's), CONSUL_HTTP_TOKEN as given.
	if [[ -n $(consul_token edge) ]]; then
		CONSUL_HTTP_TOKEN=$(consul_token edge)
	fi
	export CONSUL_HTTP_TOKEN="${CONSUL_HTTP_TOKEN:-}"
	unset CONSUL_TOKEN # consul-template would prefer it

	# A consul-template of an earlier run still has the old template in memory.
	stop_proc consul-template >/dev/null
	rm -f "$EDGE_RENDERED"
	printf '\n=== %s render once\n' "$(date -u +%FT%TZ)" >>"$ctlog"
	"$ct" -config "$R/nginx/consul-template.hcl" -consul-addr "$CONSUL_ADDR" -once </dev/null >>"$ctlog" 2>&1 ||
		fail_part edge "consul-template could not render nginx/nginx.conf.ctmpl" "$ctlog"
	cmp -s "$EDGE_RENDERED" "$EDGE_CONF" ||
		fail_part edge "the rendered nginx config fails nginx -t (rendered: ${EDGE_RENDERED#"$R"/})" "$ctlog"

	if is_running nginx; then
		say "nginx: running (pid $(proc_pid nginx)), config reloaded"
	else
		if port_open "$EDGE_HOST" "$EDGE_PORT"; then
			fail_part edge "port $EDGE_PORT is taken by another process $(port_owner "$EDGE_PORT")"
		fi
		if [[ -n ${EDGE_TLS_CERT:-} ]] && port_open "$EDGE_HOST" "$EDGE_TLS_PORT"; then
			fail_part edge "port $EDGE_TLS_PORT (EDGE_TLS_PORT) is taken by another process $(port_owner "$EDGE_TLS_PORT")"
		fi
		start_detached nginx nginx -p "$EDGE_PREFIX" -e "$EDGE_ERROR_LOG" -c "$EDGE_CONF" -g 'daemon off;'
	fi
	await edge nginx "$EDGE_ERROR_LOG" "$TIMEOUT_EDGE" "$(edge_url /healthz)" edge_ready
	say "nginx: edge on $(edge_url)"
	if [[ -n ${EDGE_TLS_CERT:-} ]]; then
		say "nginx: HTTPS on port $EDGE_TLS_PORT; plain HTTP redirects there (/healthz excepted)"
	fi

	start_detached consul-template "$ct" -config "$R/nginx/consul-template.hcl" -consul-addr "$CONSUL_ADDR"
	sleep 1
	is_running consul-template || fail_part consul-template "exited right after start" "$ctlog"
	say "consul-template: watching Consul (pid $(proc_pid consul-template))"
}

stop() {
	stop_proc consul-template
	stop_proc nginx
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) die "usage: scripts/edge.sh start|stop" ;;
esac
