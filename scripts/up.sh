#!/usr/bin/env bash
# Starts the whole local stack and returns once it is ready, leaving it running
# in the background (`make up`):
#   install what is missing, start the dependencies, build every service,
#   (re)start every service and wait until Consul reports it passing, then
#   start the edge (scripts/edge.sh: nginx kept current by consul-template).
# Running it again installs and builds nothing that is current, restarts only
# the services whose binary changed (replicas included) and re-renders the
# edge; dependencies that run are left as they are.
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
		unset PORT
		export SERVICE_ID
		SERVICE_ID=$(main_instance_id "$svc")
		start_service "$svc" "$svc"
	)
}

# start_replica SVC NAME: another instance on an ephemeral port, id NAME.
start_replica() {
	PORT=0 SERVICE_ID=$2 start_service "$2" "$1"
}

# restart_service SVC: stops every running instance of SVC (SIGTERM first: it
# deregisters and drains), drops what a killed instance left in Consul, and
# starts the same instances again from the new binary.
restart_service() {
	local svc=$1 inst instances key
	mapfile -t instances < <(service_instances "$svc")
	key=$(cat "$BIN_DIR/$svc.key" 2>/dev/null || true)
	if is_running "$svc" && [[ -n $key && $(cat "$RUN_DIR/$svc.key" 2>/dev/null) == "$key" ]]; then
		say "$svc: running, binary unchanged (${#instances[@]} instance(s))"
		return
	fi
	((${#instances[@]} == 0)) || stop_procs "$TIMEOUT_STOP_SERVICE" "${instances[@]}"
	# What a killed instance of ours left in Consul: the first instance's id,
	# and each replica's (its process name).
	deregister_instances "$(main_instance_id "$svc")"
	start_main "$svc"
	for inst in "${instances[@]}"; do
		[[ $inst == "$svc" ]] && continue
		deregister_instances "$inst"
		start_replica "$svc" "$inst"
	done
	printf '%s\n' "$key" >"$RUN_DIR/$svc.key"
	say "$svc: started ($((${#instances[@]} > 1 ? ${#instances[@]} : 1)) instance(s))"
}

# main_instance_id SVC: the Consul id of the first instance of SVC.
main_instance_id() { printf '%s-%s\n' "$1" "$(hostname)"; }

# await_service SVC: waits until our first instance of SVC passes (other
# instances, e.g. a test's, may come and go under the same name).
await_service() {
	await "$1" "$1" "$(logfile "$1")" "$TIMEOUT_SERVICE" "passing health checks in Consul" \
		instance_passing "$1" "$(main_instance_id "$1")"
	say "$1: passing in Consul"
}

print_urls() {
	cat <<EOF

audiomill is up. Everything runs in the background; \`make logs\` follows the logs, \`make down\` stops it.
  edge (API)         $(edge_url /api/)
  Consul UI          http://localhost:${CONSUL_ADDR##*:}/ui  (Log in with the operator token:
                     $(consul_token management)
                     also in ${DATA_DIR#"$R"/}/consul-operator.token)
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
	ensure_service_secrets
	# The links in the notifier's emails point at the edge.
	PUBLIC_URL="${PUBLIC_URL:-$(edge_url)}"
	export PUBLIC_URL
	local svc
	for svc in "${SERVICES[@]}"; do
		restart_service "$svc"
	done
	for svc in "${SERVICES[@]}"; do
		await_service "$svc"
	done
	"$R/scripts/edge.sh" start
	print_urls
	local old
	old=$(old_records)
	if [[ -n $old ]]; then
		cat <<EOF

note: ${DATA_DIR#"$R"/}/ferretdb holds records of an earlier version ($old).
      Accounts, signing keys and jobs now live in PostgreSQL; copy them once with
        scripts/migrate-from-mongo.sh
      (idempotent; the old data is left as it is).
EOF
	fi
}

main "$@"
