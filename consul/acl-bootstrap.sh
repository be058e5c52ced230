#!/usr/bin/env bash
# Creates the stack's Consul ACL policies and tokens, or brings them up to
# date: idempotent, run after every start of the agent (scripts/deps.sh for
# `make up`; the consul-acl container of docker-compose.yml).
#   consul/acl-bootstrap.sh TOKENS_FILE
# TOKENS_FILE holds one "NAME=<secret>" line per token (UUIDs, mode 600):
#   management  the agent's initial_management token: the operator's token,
#               global-management (the Consul UI, this script)
#   agent       the agent's own token: its node, reading services
#   auth filestorage gateway converter notifier
#               each service's: register (and deregister) only its own
#               service name; read every service and node (discovery)
#   edge        consul-template's: read every service and node
#   test        the test suites' (make test): register and read anything;
#               optional (docker-compose.yml has none)
# The tokens are created with these secrets as their SecretIDs, so they are
# the same after the agent lost its state (a -dev agent keeps nothing across
# a restart) and every process keeps working with the token it was given.
# Environment: CONSUL_HTTP_ADDR (host:port or URL; 127.0.0.1:8500),
# ACL_BOOTSTRAP_TIMEOUT (seconds to wait for the agent's ACL system; 30).
# Needs bash, curl and sed; no secret ever goes on a command line.
# docs/security.md says what each token may do and why.
set -euo pipefail

tokens_file=${1:?usage: consul/acl-bootstrap.sh TOKENS_FILE}
addr=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}
[[ $addr == *://* ]] || addr="http://$addr"
timeout=${ACL_BOOTSTRAP_TIMEOUT:-30}

# The services: each registers only under its own name.
services=(auth filestorage gateway converter notifier)

die() {
	printf 'consul-acl: %s\n' "$*" >&2
	exit 1
}

[[ -r $tokens_file ]] || die "cannot read $tokens_file"

# secret NAME: the secret of token NAME from the tokens file (empty: none).
secret() { sed -n "s/^$1=//p" "$tokens_file" | head -n 1; }

management=$(secret management)
[[ -n $management ]] || die "$tokens_file has no management= line"

# The request headers go through a file (mode 600), never argv.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
header() { printf 'X-Consul-Token: %s\n' "$1" >"$work/h"; }

# api TOKEN METHOD PATH [BODY]: sets $code to the agent's status; its
# answer is in $work/out.
api() {
	local body=${4:-}
	header "$1"
	: >"$work/out"
	code=$(printf '%s' "$body" | curl -sS -m 10 -o "$work/out" -w '%{http_code}' -X "$2" \
		-H @"$work/h" -H 'Content-Type: application/json' --data-binary @- "$addr$3" 2>"$work/err") || code=000
}

# json_id FIELD: the value of "FIELD": "..." in the agent's last answer.
json_id() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$work/out" | head -n 1; }

# Until the agent has elected itself and made the management token.
deadline=$((SECONDS + timeout))
until api "$management" GET /v1/acl/token/self && [[ $code == 200 ]]; do
	if ((SECONDS >= deadline)); then
		case $code in
		401) die "ACLs are disabled on the agent at $addr (an agent started before ACLs: restart it)" ;;
		403) die "the agent at $addr does not accept the management token of $tokens_file (another stack's agent?)" ;;
		*) die "the agent at $addr did not answer with its ACL system within ${timeout}s (last status $code: $(cat "$work/err" "$work/out" 2>/dev/null))" ;;
		esac
	fi
	sleep 0.5
done

# policy NAME RULES: creates or updates the policy NAME.
policy() {
	local name=$1 rules body id
	rules=${2//\\/\\\\}
	rules=${rules//\"/\\\"}
	rules=${rules//$'\n'/\\n}
	api "$management" GET "/v1/acl/policy/name/$name"
	id=$(json_id ID)
	body="{\"Name\":\"$name\",\"Description\":\"audiomill (consul/acl-bootstrap.sh)\",\"Rules\":\"$rules\"}"
	if [[ $code == 200 && -n $id ]]; then
		api "$management" PUT "/v1/acl/policy/$id" "$body"
	else
		api "$management" PUT /v1/acl/policy "$body"
	fi
	[[ $code == 200 ]] || die "policy $name: status $code: $(cat "$work/out")"
}

# token NAME POLICY: the token NAME (its secret from the tokens file) with
# only POLICY, created or updated.
token() {
	local name=$1 pol=$2 sec accessor body
	sec=$(secret "$name")
	[[ -n $sec ]] || die "$tokens_file has no $name= line"
	api "$sec" GET /v1/acl/token/self
	accessor=$(json_id AccessorID)
	body="\"Description\":\"audiomill $name\",\"Policies\":[{\"Name\":\"$pol\"}],\"Local\":false"
	if [[ $code == 200 && -n $accessor ]]; then
		api "$management" PUT "/v1/acl/token/$accessor" "{\"AccessorID\":\"$accessor\",$body}"
	else
		# The secret goes in the body (stdin), as the token's SecretID.
		api "$management" PUT /v1/acl/token "{\"SecretID\":\"$sec\",$body}"
	fi
	[[ $code == 200 ]] || die "token $name: status $code: $(cat "$work/out")"
}

read_all='service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }'

policy audiomill-agent 'node_prefix "" { policy = "write" }
service_prefix "" { policy = "read" }'
token agent audiomill-agent

for svc in "${services[@]}"; do
	policy "audiomill-service-$svc" "service \"$svc\" { policy = \"write\" }
$read_all"
	token "$svc" "audiomill-service-$svc"
done

policy audiomill-edge "$read_all"
token edge audiomill-edge

if [[ -n $(secret test) ]]; then
	policy audiomill-test 'service_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
agent_prefix "" { policy = "read" }'
	token test audiomill-test
fi

printf 'consul-acl: policies and tokens up to date on %s\n' "$addr"
