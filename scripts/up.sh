#!/usr/bin/env bash
# Starts the whole local stack and returns once it is ready, leaving it running
# in the background (`make up`):
#   install what is missing, start the dependencies, build every service,
#   (re)start every service and wait until Consul reports it passing, then
#   render the edge config, start nginx and keep consul-template re-rendering it.
# Running it again rebuilds and restarts the services (replicas included) and
# re-renders the edge; dependencies that run are left as they are.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# start_main SVC: the service's first instance, on its default port.
start_main() {
	local svc=$1 port=${SERVICE_PORT[$1]}
	if port_open 127.0.0.1 "$port"; then
		fail_part "$svc" "port $port is taken by another process $(port_owner "$port")"
	fi
	(
		unset PORT SERVICE_ID
		start_detached "$svc" "$BIN_DIR/$svc"
	)
}

# start_replica SVC NAME: another instance on an ephemeral port, id NAME.
start_replica() {
	PORT=0 SERVICE_ID=$2 start_detached "$2" "$BIN_DIR/$1"
}

# restart_service SVC: stops every running instance of SVC (SIGTERM first: it
# deregisters and drains), drops what a killed instance left in Consul, and
# starts the same instances again from the new binary.
restart_service() {
	local svc=$1 inst instances
	mapfile -t instances < <(service_instances "$svc")
	((${#instances[@]} == 0)) || stop_procs "$TIMEOUT_STOP_SERVICE" "${instances[@]}"
	deregister_service "$svc"
	start_main "$svc"
	for inst in "${instances[@]}"; do
		[[ $inst == "$svc" ]] || start_replica "$svc" "$inst"
	done
	say "$svc: started ($((${#instances[@]} > 1 ? ${#instances[@]} : 1)) instance(s))"
}

await_service() {
	await "$1" "$1" "$(logfile "$1")" "$TIMEOUT_SERVICE" "passing health checks in Consul" service_passing "$1"
	say "$1: passing in Consul"
}

edge_url() {
	local host=$EDGE_HOST
	[[ $host != 0.0.0.0 ]] || host=127.0.0.1
	printf 'http://%s:%s%s\n' "$host" "$EDGE_PORT" "${1:-}"
}

edge_ready() { [[ $(http_code "$(edge_url /healthz)") == 200 ]]; }

# start_edge: render once and test (nginx/reload.sh runs `nginx -t` and installs
# the config), start nginx or let it reload, then keep consul-template running.
start_edge() {
	local ct ctlog
	edge_env
	ct=$(consul_template_bin)
	need_tool "$ct" consul-template
	command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || die "nginx is not installed; run scripts/install.sh"
	PATH="$PATH:/usr/sbin"
	ctlog=$(logfile consul-template)

	# A consul-template of an earlier run still has the old template in memory.
	stop_proc consul-template >/dev/null
	rm -f "$EDGE_RENDERED"
	printf '\n=== %s render once\n' "$(date -u +%FT%TZ)" >>"$ctlog"
	"$ct" -config "$R/nginx/consul-template.hcl" -once </dev/null >>"$ctlog" 2>&1 ||
		fail_part edge "consul-template could not render nginx/nginx.conf.ctmpl" "$ctlog"
	cmp -s "$EDGE_RENDERED" "$EDGE_CONF" ||
		fail_part edge "the rendered nginx config fails nginx -t (rendered: ${EDGE_RENDERED#"$R"/})" "$ctlog"

	if is_running nginx; then
		say "nginx: running (pid $(proc_pid nginx)), config reloaded"
	else
		if port_open "$EDGE_HOST" "$EDGE_PORT"; then
			fail_part edge "port $EDGE_PORT is taken by another process $(port_owner "$EDGE_PORT")"
		fi
		start_detached nginx nginx -p "$EDGE_PREFIX" -e "$EDGE_ERROR_LOG" -c "$EDGE_CONF" -g 'daemon off;'
	fi
	await edge nginx "$EDGE_ERROR_LOG" "$TIMEOUT_EDGE" "$(edge_url /healthz)" edge_ready
	say "nginx: edge on $(edge_url)"

	start_detached consul-template "$ct" -config "$R/nginx/consul-template.hcl"
	sleep 1
	is_running consul-template || fail_part consul-template "exited right after start" "$ctlog"
	say "consul-template: watching Consul (pid $(proc_pid consul-template))"
}

print_urls() {
	cat <<EOF

audiomill is up. Everything runs in the background; \`make logs\` follows the logs, \`make down\` stops it.
  edge (API)         $(edge_url /api/)
  Consul UI          http://localhost:${CONSUL_ADDR##*:}/ui
  RabbitMQ UI        http://localhost:$RABBITMQ_UI_PORT  (guest/guest)
  MailDev            http://localhost:$MAILDEV_WEB_PORT
  logs               ${LOG_DIR#"$R"/}/<process>.log
EOF
}

main() {
	cd "$R"
	"$R/scripts/install.sh"
	"$R/scripts/deps.sh" start
	"$R/scripts/build.sh"
	ensure_dirs
	local svc
	for svc in "${SERVICES[@]}"; do
		restart_service "$svc"
	done
	for svc in "${SERVICES[@]}"; do
		await_service "$svc"
	done
	start_edge
	print_urls
}

main "$@"
