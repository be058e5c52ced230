#!/usr/bin/env bash
# Starts one more instance of a service of the running stack:
#   scripts/replica.sh <service>
# The replica listens on an ephemeral port (PORT=0), registers that port in
# Consul under the id <service>-<n>, and logs to var/log/<service>-<n>.log;
# the edge picks it up once its health check passes. `make up` restarts
# replicas with their service; `make down` stops them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
	local svc=${1:-} n=2 name port
	[[ -n $svc && -v SERVICE_PORT[$svc] ]] || die "usage: scripts/replica.sh <service> (one of: ${SERVICES[*]})"
	[[ -x $BIN_DIR/$svc ]] || die "$svc is not built; start the stack first (make up)"
	consul_has_leader || die "Consul does not answer on $CONSUL_ADDR; start the stack first (make up)"
	ensure_dirs
	while is_running "$svc-$n"; do
		n=$((n + 1))
	done
	name="$svc-$n"
	cd "$R"
	ensure_service_secrets
	PORT=0 SERVICE_ID=$name start_service "$name" "$svc"
	await "$name" "$name" "$(logfile "$name")" "$TIMEOUT_SERVICE" "instance $name passing in Consul" \
		instance_passing "$svc" "$name"
	port=$(consul_get "/v1/agent/service/$name" | grep -Eo '"Port": *[0-9]+' | head -n 1 | grep -Eo '[0-9]+$')
	say "$name: started (pid $(proc_pid "$name")), port ${port:-?}, passing in Consul; log ${LOG_DIR#"$R"/}/$name.log"
}

main "$@"
