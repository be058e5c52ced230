#!/usr/bin/env bash
# Stops everything the stack started (`make down`): the Nomad cluster's jobs
# and agent (make cluster-up), consul-template, nginx,
# every service instance (replicas included), MailDev, FerretDB, Consul, and
# Redis/RabbitMQ only when this stack started them. SIGTERM first, SIGKILL
# after a grace period. Data under var/data survives. Then checks that none of
# the stack's ports is still listening, and fails naming any that is.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# stack_ports: every port the stack listens on (the shared Redis and RabbitMQ
# only when we started them).
stack_ports() {
	local svc
	printf '%s\n' "$EDGE_PORT" "${CONSUL_ADDR##*:}" "$SMTP_PORT" "$MAILDEV_WEB_PORT"
	[[ -n ${MONGO_URI:-} ]] || printf '%s\n' "${FERRETDB_ADDR##*:}"
	for svc in "${SERVICES[@]}"; do
		printf '%s\n' "${SERVICE_PORT[$svc]}"
	done
	[[ ! -e $RUN_DIR/redis.started ]] || printf '%s\n' "$REDIS_PORT"
	[[ ! -e $RUN_DIR/rabbitmq.started ]] || printf '%s\n' "$AMQP_PORT" "$RABBITMQ_UI_PORT"
}

main() {
	local ports svc f name busy=()
	ensure_dirs
	mapfile -t ports < <(stack_ports)

	# The cluster's jobs first (make cluster-up): they use the dependencies.
	! is_running nomad || "$R/scripts/cluster.sh" stop
	"$R/scripts/edge.sh" stop
	local instances=()
	for svc in "${SERVICES[@]}"; do
		mapfile -t -O "${#instances[@]}" instances < <(service_instances "$svc")
	done
	((${#instances[@]} == 0)) || stop_procs "$TIMEOUT_STOP_SERVICE" "${instances[@]}"

	"$R/scripts/deps.sh" stop

	# Anything else with a pid file (e.g. an instance of a service since removed).
	for f in "$RUN_DIR"/*.pid; do
		[[ -e $f ]] || continue
		name=$(basename "$f" .pid)
		[[ $name != redis ]] || continue # a shared Redis we did not start may write here
		stop_proc "$name"
	done

	for f in "${ports[@]}"; do
		if port_open 127.0.0.1 "$f"; then
			busy+=("$f")
			warn "port $f is still listening $(port_owner "$f")"
		fi
	done
	((${#busy[@]} == 0)) || die "stack stopped, but ports still listening: ${busy[*]}"
	say "stack stopped; no listener left on ports ${ports[*]}"
}

main "$@"
