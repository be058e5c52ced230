#!/usr/bin/env bash
# The platform as Nomad jobs on this machine (`make cluster-up`,
# `make cluster-down`; docs/operations/cluster.md):
#   scripts/cluster.sh start    the stack as `make up` sets it up (its
#                               dependencies, secrets, databases, accounts;
#                               its binaries in var/bin are the jobs'
#                               artifacts), then its own instances and edge
#                               stopped (the cluster's take their place),
#                               Nomad built once into the tools cache, a
#                               `nomad agent -dev` beside the stack's Consul,
#                               each job's settings as a Nomad variable, and
#                               every job of deploy/nomad, each deployment
#                               awaited
#   scripts/cluster.sh stop     every job (purged), then the agent; the
#                               dependencies stay (`make down` stops them,
#                               `make up` starts the stack's own instances)
#   scripts/cluster.sh vars     writes the Nomad variables again (a secret changed)
#   scripts/cluster.sh jobs     the variables, then every job submitted again
#                               (a job file or a binary changed)
# The cluster's instances carry the tag "nomad"; its edge, on EDGE_PORT
# (8080) like the stack's, routes only to them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NOMAD_ADDR="${NOMAD_ADDR:-http://127.0.0.1:4646}"
export NOMAD_ADDR
CLUSTER_TAG=nomad
TIMEOUT_NOMAD=60
# Jobs in the order they start (the edge last: it needs instances to route to).
CLUSTER_JOBS=(auth filestorage notifier converter gateway edge)
declare -A CLUSTER_COUNT=([auth]=2 [filestorage]=2 [notifier]=1 [converter]=2 [gateway]=3 [edge]=1)

nomad_dir() { printf '%s/nomad\n' "$VAR_DIR"; }

# nomad_cli ARGS...: the nomad command against the agent.
nomad_cli() { "$(nomad_bin)" "$@"; }

nomad_leader() { [[ -n $(curl -sf -m 2 "$NOMAD_ADDR/v1/status/leader" 2>/dev/null | tr -d '"') ]]; }

# agent_config: the dev agent's settings: loopback only, raw_exec on, Consul
# through the stack's agent with the read-only token the edge uses (its
# templates read the passing instances), and nothing of Nomad's own
# registered in Consul.
agent_config() {
	cat <<EOF
bind_addr = "127.0.0.1"
ports {
  http = ${NOMAD_ADDR##*:}
}
consul {
  address          = "$CONSUL_ADDR"
  token            = "$(consul_token edge)"
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
EOF
}

# job_settings SVC: SVC's settings as `make up` gives them (service_env, its
# Consul token included), the files' contents inline (a client has no
# var/data): the Nomad variable nomad/jobs/SVC, as JSON.
job_settings() {
	local line k v
	{
		while IFS= read -r line; do
			k=${line%%=*} v=${line#*=}
			case $k in
			AUTH_KEK_FILE) printf 'AUTH_KEK\n%s\n' "$(<"$v")" ;;
			GATEWAY_LINK_KEY_FILE) printf 'GATEWAY_LINK_KEY\n%s\n' "$(<"$v")" ;;
			*) printf '%s\n%s\n' "$k" "$v" ;;
			esac
		done < <(service_env "$1")
	} | /usr/bin/python3 -c '
import json, sys
lines = sys.stdin.read().split("\n")
print(json.dumps({"Items": dict(zip(lines[0::2], lines[1::2]))}))'
}

# put_vars: every job's Nomad variable (the edge needs none).
put_vars() {
	local svc
	for svc in "${SERVICES[@]}"; do
		job_settings "$svc" | nomad_cli var put -force -in=json "nomad/jobs/$svc" - >/dev/null ||
			die "nomad: could not write the variable nomad/jobs/$svc"
	done
	say "nomad: variables nomad/jobs/{$(
		IFS=,
		printf '%s' "${SERVICES[*]}"
	)} written"
}

# run_job NAME [VAR=VALUE...]: submits deploy/nomad/NAME.nomad.hcl and waits
# for its deployment (nomad job run monitors it to the end).
run_job() {
	local name=$1 args=() kv
	shift
	# This machine's one client has a few thousand MHz to place: every task
	# reserves CLUSTER_CPU (the jobs' defaults are for real clients).
	args=(-var "count=${CLUSTER_COUNT[$name]}" -var "cpu=${CLUSTER_CPU:-100}")
	if [[ $name == edge ]]; then
		# The sign-up limits make up gives its edge (edge_env).
		args+=(-var "port=$EDGE_PORT" -var "service_tag=$CLUSTER_TAG" -var "templates=$R/nginx"
			-var "signup_rate=${EDGE_SIGNUP_RATE:-50r/s}" -var "signup_burst=${EDGE_SIGNUP_BURST:-100}")
	else
		args+=(-var "artifacts=$BIN_DIR" -var "tags=$CLUSTER_TAG")
	fi
	for kv in "$@"; do args+=(-var "$kv"); done
	nomad_cli job run "${args[@]}" "$R/deploy/nomad/$name.nomad.hcl" >>"$(logfile nomad-jobs)" 2>&1 ||
		die "nomad: job $name did not deploy (see $(logfile nomad-jobs) and \`nomad job status $name\`)"
	say "nomad: job $name deployed (${CLUSTER_COUNT[$name]})"
}

# stop_stack_instances: the stack's own service instances and edge, so the
# cluster's are the only consumers of the queues and its edge has the port.
stop_stack_instances() {
	local svc instances=()
	"$R/scripts/edge.sh" stop
	for svc in "${SERVICES[@]}"; do
		mapfile -t -O "${#instances[@]}" instances < <(service_instances "$svc")
	done
	((${#instances[@]} == 0)) || stop_procs "$TIMEOUT_STOP_SERVICE" "${instances[@]}"
	for svc in "${SERVICES[@]}"; do
		rm -f "$RUN_DIR/$svc.key" # make up starts them again, binary unchanged or not
	done
}

# run_jobs: submits every job, in order, each deployment awaited.
run_jobs() {
	local job
	for job in "${CLUSTER_JOBS[@]}"; do
		run_job "$job"
	done
}

start() {
	"$R/scripts/up.sh"
	ensure_dirs
	stop_stack_instances
	"$R/scripts/install.sh" nomad
	mkdir -p "$(nomad_dir)"
	agent_config >"$(nomad_dir)/agent.hcl"
	chmod 600 "$(nomad_dir)/agent.hcl"
	if ! is_running nomad; then
		start_detached nomad "$(nomad_bin)" agent -dev -config "$(nomad_dir)/agent.hcl"
	fi
	await nomad nomad "$(logfile nomad)" "$TIMEOUT_NOMAD" "a leader" nomad_leader
	put_vars
	run_jobs
	say "cluster: up; the edge $(edge_url /), Nomad $NOMAD_ADDR/ui"
}

stop() {
	ensure_dirs
	if is_running nomad; then
		local job
		for job in "${CLUSTER_JOBS[@]}"; do
			nomad_cli job stop -purge -yes "$job" >/dev/null 2>&1 || true
		done
		# The agent leaves its tasks running when it stops: wait for them.
		wait_for 60 no_allocations || warn "nomad: allocations still running after 60s"
	fi
	stop_proc nomad
}

no_allocations() {
	[[ $(curl -sf -m 2 "$NOMAD_ADDR/v1/allocations" | /usr/bin/python3 -c '
import json, sys
print(sum(1 for a in json.load(sys.stdin) if a["ClientStatus"] in ("pending", "running")))') == 0 ]]
}

case ${1:-} in
start) start ;;
stop) stop ;;
vars)
	ensure_dirs
	put_vars
	;;
jobs)
	ensure_dirs
	put_vars
	run_jobs
	;;
*) die "usage: scripts/cluster.sh start|stop|vars|jobs" ;;
esac
