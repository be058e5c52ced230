# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings below are used by the scripts that source this file
# Shared by the stack scripts (install, deps, build, up, replica, down, logs).
# Source it; it sets paths and defines small helpers, and runs nothing.
#
# Runtime state lives under $R/var (gitignored; AUDIOMILL_VAR_DIR moves it):
#   var/log/<proc>.log   one log per process
#   var/run/<proc>.pid   pid files (the pid; start-stop-daemon writes them)
#   var/run/<part>.started  marker: we started a shared server (redis, rabbitmq)
#   var/data/            databases and mail; survives `make down`
#   var/bin/<service>    built service binaries
#   var/nginx/           rendered edge config, nginx temp dirs and pid
# Built tools live outside the repo, keyed by version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/audiomill/tools/<name>-<version>/
# Secrets that belong to the machine's shared servers (auth's KEK) live in
#   ${XDG_STATE_HOME:-$HOME/.local/state}/audiomill/ (AUDIOMILL_STATE_DIR)

R="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# AUDIOMILL_VAR_DIR moves it (the e2e tests run their own edge and binaries
# under a temporary directory this way).
VAR_DIR="${AUDIOMILL_VAR_DIR:-$R/var}"
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"
DATA_DIR="$VAR_DIR/data"
BIN_DIR="$VAR_DIR/bin"
NGINX_DIR="$VAR_DIR/nginx"
TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/audiomill/tools"
STATE_DIR="${AUDIOMILL_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/audiomill}"

# Every service in the repo, in start order, and its default port.
SERVICES=(auth filestorage gateway converter notifier)
declare -A SERVICE_PORT=([auth]=8101 [filestorage]=8102 [gateway]=8103 [converter]=8104 [notifier]=8105)

# Addresses of the dependencies (the same as the services' defaults).
CONSUL_ADDR="127.0.0.1:8500"
FERRETDB_ADDR="127.0.0.1:27017"
REDIS_PORT=6379
PG_HOST=127.0.0.1
PG_PORT=5432
AMQP_PORT=5672
RABBITMQ_UI_PORT=15672
SMTP_PORT=1025
MAILDEV_WEB_PORT=1080
EDGE_HOST="${EDGE_HOST:-127.0.0.1}"
EDGE_PORT="${EDGE_PORT:-8080}"

# RabbitMQ's consumer timeout for the stack: 2 h, above the converter's
# longest conversion (CONVERTER_MAX_TIME, 60 min).
RABBITMQ_CONSUMER_TIMEOUT_MS=7200000

# Pinned MailDev (npm). 3.x dropped the /email REST API and needs Node 22.
MAILDEV_VERSION="2.2.1"

# Pinned staticcheck (`make check`), installed from the module proxy:
# v0.8.2 is release 2026.2.2, which loads Go 1.26 code.
STATICCHECK_VERSION="v0.8.2"

# Debian packages the stack runs on (command -> package).
declare -A DEBIAN_PACKAGE=(
	[nginx]=nginx [ffmpeg]=ffmpeg [rabbitmq-server]=rabbitmq-server
	[redis-server]=redis-server [curl]=curl
	[pg_ctlcluster]=postgresql [psql]=postgresql-client [node]=nodejs [npm]=npm
	[docker-compose]=docker-compose # validates docker-compose.yml in the tests
	[chromium]=chromium             # the web page's browser tests (e2e/browser, chromedp)
)
# Debian packages of Python modules the tests import with /usr/bin/python3
# (module -> package): filestorage's GridFS interop tests run pymongo's gridfs.
declare -A DEBIAN_PYTHON_MODULE=([pymongo]=python3-pymongo [gridfs]=python3-gridfs)

# Readiness timeouts, seconds.
TIMEOUT_CONSUL=30
# FerretDB's launcher indexes the collections that lack its _id index before it
# listens: the first start on a large existing database takes a while.
TIMEOUT_FERRETDB=120
TIMEOUT_REDIS=15
TIMEOUT_POSTGRES=60
TIMEOUT_RABBITMQ=120
TIMEOUT_MAILDEV=30
TIMEOUT_SERVICE=60
TIMEOUT_EDGE=30
# How long a process may take to stop after SIGTERM before SIGKILL.
# Services drain in-flight requests for up to SHUTDOWN_TIMEOUT (15 s by default).
TIMEOUT_STOP=10
TIMEOUT_STOP_SERVICE=20

# ---------------------------------------------------------------- messages

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# fail_part PART MESSAGE [LOGFILE]: names the part that did not come up,
# shows the end of its log and exits non-zero.
fail_part() {
	local part=$1 msg=$2 log=${3:-}
	printf 'error: %s: %s\n' "$part" "$msg" >&2
	if [[ -n $log && -s $log ]]; then
		printf -- '--- last lines of %s ---\n' "${log#"$R"/}" >&2
		tail -n 25 "$log" >&2
		printf -- '---\n' >&2
	fi
	exit 1
}

ensure_dirs() {
	mkdir -p "$LOG_DIR" "$RUN_DIR" "$DATA_DIR" "$BIN_DIR" "$NGINX_DIR"
}

# ---------------------------------------------------------------- tools

# go_tools ARGS...: the go command for the tools modules, which are not in go.work.
# GONOSUMDB: one pseudo-version of consul-awsauth is missing from the checksum database.
go_tools() {
	GOWORK=off GOFLAGS=-mod=readonly GONOSUMDB=github.com/hashicorp/consul-awsauth go "$@"
}

# module_version DIR MODULE: the version of MODULE that DIR's go.mod selects.
module_version() {
	(cd "$1" && go_tools list -m -f '{{.Version}}' "$2")
}

tool_dir() { printf '%s/%s-%s\n' "$TOOLS_CACHE" "$1" "$2"; }

# HashiCorp's tools that tools/go.mod pins (nomad: NOMAD_VERSION below), by module,
# and the arguments that make each print its version ("Consul v1.21.0",
# "consul-template v0.41.1 (…)", "Nomad v1.6.1").
declare -A HASHICORP_MODULE=([consul]=github.com/hashicorp/consul
	[consul-template]=github.com/hashicorp/consul-template [nomad]=github.com/hashicorp/nomad)
declare -A HASHICORP_VERSION_ARGS=([consul]=version [consul-template]=-v [nomad]=version)

pinned_version() { module_version "$R/tools" "${HASHICORP_MODULE[$1]}"; }

# tool_on_path NAME VERSION: NAME from PATH (e.g. HashiCorp's own package)
# when it says it is VERSION; nothing otherwise.
tool_on_path() {
	local p out
	p=$(type -P "$1") || return 0
	out=$(timeout 10 "$p" "${HASHICORP_VERSION_ARGS[$1]}" 2>/dev/null) || return 0
	out=${out%%$'\n'*}
	if [[ " $out " == *" $2 "* ]]; then printf '%s\n' "$p"; fi
}

# pinned_bin NAME: the binary of NAME at the version tools/go.mod pins: the
# one on PATH when it is that version, else our build in the cache.
pinned_bin() {
	local v p
	v=$(pinned_version "$1")
	p=$(tool_on_path "$1" "$v")
	printf '%s\n' "${p:-$(tool_dir "$1" "$v")/$1}"
}

consul_bin() { pinned_bin consul; }
consul_template_bin() { pinned_bin consul-template; }

# Nomad for `make cluster-up` (deploy/nomad): v1.6.1, the last release under
# the MPL-2.0 (later ones are BSL), built from the Go module proxy by
# scripts/install.sh nomad. Its go.mod replaces ./api, which the module's
# zip lacks: the api module of the same commit is put there first.
NOMAD_VERSION="v1.6.1"
NOMAD_API_VERSION="v0.0.0-20230721134942-515895c7690c"

# nomad_bin: Nomad at NOMAD_VERSION: the one on PATH when it is that
# version, else our build in the cache.
nomad_bin() {
	local p
	p=$(tool_on_path nomad "$NOMAD_VERSION")
	printf '%s\n' "${p:-$(tool_dir nomad "$NOMAD_VERSION")/nomad}"
}

# ferretdb_key: FerretDB's version plus a hash of the launcher's sources,
# so a change to the launcher or its dependencies builds a new binary.
ferretdb_key() {
	local v sum
	v=$(module_version "$R/tools/ferretdb" github.com/FerretDB/FerretDB)
	sum=$(cd "$R/tools/ferretdb" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
	printf '%s-%s\n' "$v" "$sum"
}

ferretdb_bin() { printf '%s/ferretdb\n' "$(tool_dir ferretdb "$(ferretdb_key)")"; }

maildev_js() { printf '%s/node_modules/maildev/bin/maildev\n' "$(tool_dir maildev "$MAILDEV_VERSION")"; }

# staticcheck_bin: keyed by the Go version too: a staticcheck built by an
# older Go cannot load code that needs a newer one.
staticcheck_bin() { printf '%s/staticcheck\n' "$(tool_dir staticcheck "$STATICCHECK_VERSION-$(go env GOVERSION)")"; }

# need_tool PATH NAME: fails when an installed tool is missing.
need_tool() {
	[[ -x $1 || -f $1 ]] || die "$2 is not installed ($1 missing); run scripts/install.sh (make install)"
}

# ---------------------------------------------------------------- ports and HTTP

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
	# shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# port_owner PORT: who listens on PORT, when ss can tell.
port_owner() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1
	fi
}

# http_code URL: the HTTP status (000 when nothing answers).
http_code() {
	curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true
}

# wait_for TIMEOUT CHECK...: polls CHECK until it succeeds or TIMEOUT seconds pass.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.3
	done
}

# ---------------------------------------------------------------- processes

# The stack's own processes run under Debian's start-stop-daemon (dpkg's, on
# every Debian machine): it detaches them (own session, stdin /dev/null),
# appends their output to var/log/NAME.log, writes their pid to
# var/run/NAME.pid (one line), and stops them: SIGTERM, then SIGKILL after a
# grace period. A pid counts as NAME's only while that process still runs
# NAME's program (proc_comm): a pid file left by a process that is gone, its
# pid since taken by another program (e.g. after a reboot), counts as not
# running and is never signalled.

pidfile() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }
logfile() { printf '%s/%s.log\n' "$LOG_DIR" "$1"; }

# proc_comm NAME: the process name (/proc/PID/comm) of NAME's program: its
# file name, cut to the kernel's 15 characters; a replica's (gateway-2) is its
# service's.
proc_comm() {
	local c=$1
	case $c in
	maildev) c=node ;;
	redis) c=redis-server ;; # its own pid file (redis-server --daemonize)
	*) [[ ! $c =~ ^(.+)-[0-9]+$ ]] || c=${BASH_REMATCH[1]} ;;
	esac
	printf '%s\n' "${c:0:15}"
}

# ssd NAME ARGS...: start-stop-daemon ARGS for NAME's pid file and program.
ssd() {
	local name=$1
	shift
	PATH="$PATH:/usr/sbin:/sbin" start-stop-daemon --pidfile "$(pidfile "$name")" --name "$(proc_comm "$name")" "$@"
}

# is_running NAME: NAME's pid runs NAME's program, and has not exited: a
# zombie (exited, not yet reaped by pid 1) counts as stopped.
is_running() {
	ssd "$1" --status || return 1
	[[ $(awk '{print $3}' "/proc/$(head -n 1 "$(pidfile "$1")")/stat" 2>/dev/null) != Z ]]
}

# runs_program NAME PATH: NAME runs the executable PATH (not one elsewhere,
# e.g. an older build in another directory of the tools cache).
runs_program() { ssd "$1" --status --exec "$2" 2>/dev/null; }

# proc_pid NAME: the pid of NAME when it runs (empty otherwise).
proc_pid() {
	if is_running "$1"; then head -n 1 "$(pidfile "$1")"; fi
}

# start_detached NAME PROGRAM ARGS...: starts PROGRAM in the background as
# NAME, in the current directory. Environment set by the caller
# (VAR=x start_detached ...) is passed on.
start_detached() {
	local name=$1 prog log pid
	shift
	prog=$(type -P "$1") || die "$name: $1 not found"
	log=$(logfile "$name")
	printf '\n=== %s start %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$log"
	ssd "$name" --start --oknodo --quiet --background --make-pidfile --output "$log" \
		--chdir "$PWD" --startas "$prog" -- "${@:2}"
	# The pid file is written before the program is exec'd: until then the
	# pid does not run NAME's program yet.
	pid=$(head -n 1 "$(pidfile "$name")" 2>/dev/null || true)
	wait_for 2 exec_done "$name" "$pid" || true
}

exec_done() { is_running "$1" || ! kill -0 "$2" 2>/dev/null; }

# stop_proc NAME [TIMEOUT]: SIGTERM, SIGKILL after TIMEOUT seconds (then to
# what else runs in its session too, e.g. nginx's workers); removes the pid file.
stop_proc() {
	local name=$1 timeout=${2:-$TIMEOUT_STOP} pid sid rc=0
	pid=$(proc_pid "$name")
	if [[ -n $pid ]]; then
		sid=$(ps -o sid= -p "$pid" | tr -d ' ')
		ssd "$name" --stop --quiet --retry "TERM/$timeout" || rc=$?
		if ((rc == 2)); then
			warn "$name (pid $pid) did not stop within ${timeout}s; sending SIGKILL"
			ssd "$name" --stop --quiet --signal KILL --retry 5 || warn "$name (pid $pid) survives SIGKILL"
			# Its session is its own (start-stop-daemon made it), unless it was not started here (redis).
			[[ -z $sid || $sid == "$pid" ]] || pkill -KILL -s "$sid" || true
		fi
		say "$name: stopped (pid $pid)"
	fi
	rm -f "$(pidfile "$name")"
}

# stop_procs TIMEOUT NAME...: stop_proc for each NAME, all at once.
stop_procs() {
	local timeout=$1 name pids=()
	shift
	for name in "$@"; do
		stop_proc "$name" "$timeout" &
		pids+=($!)
	done
	((${#pids[@]} == 0)) || wait "${pids[@]}"
}

# await PART PROC LOG TIMEOUT WHAT CHECK...: waits until CHECK succeeds. Fails
# naming PART, with the end of LOG, when PROC (a pid-file name, may be empty)
# exits first or TIMEOUT seconds pass; a PROC that never got ready is stopped.
await() {
	local part=$1 proc=$2 log=$3 timeout=$4 what=$5 deadline
	shift 5
	deadline=$((SECONDS + timeout))
	until "$@"; do
		if [[ -n $proc ]] && ! is_running "$proc"; then
			rm -f "$(pidfile "$proc")"
			fail_part "$part" "exited while starting ($what never became ready)" "$log"
		fi
		if ((SECONDS >= deadline)); then
			[[ -z $proc ]] || stop_proc "$proc" >/dev/null 2>&1 || true
			fail_part "$part" "$what not ready after ${timeout}s" "$log"
		fi
		sleep 0.3
	done
}

# ---------------------------------------------------------------- consul

# consul_get PATH: the agent's answer, asked with the operator's token.
consul_get() { curl -sf -m 5 -H @<(consul_header) "http://$CONSUL_ADDR$1"; }

consul_has_leader() {
	local leader
	leader=$(consul_get /v1/status/leader 2>/dev/null) || return 1
	[[ -n $leader && $leader != '""' ]]
}

# checks_all_passing JSON: at least one health check in JSON, all passing.
checks_all_passing() {
	local total passing
	# Consul pretty-prints its JSON ("Status": "passing").
	total=$(grep -Eo '"Status": *"[a-z]*"' <<<"$1" | wc -l)
	passing=$(grep -Eo '"Status": *"passing"' <<<"$1" | wc -l)
	((total > 0 && total == passing))
}

# instance_passing SVC ID: the instance ID of SVC is registered and passing.
instance_passing() {
	local checks
	checks=$(curl -sf -m 5 -H @<(consul_header) -G "http://$CONSUL_ADDR/v1/health/checks/$1" \
		--data-urlencode "filter=ServiceID == \"$2\"") || return 1
	checks_all_passing "$checks"
}

# deregister_instances ID...: removes these instances from the local agent
# (what a killed process of ours left behind).
deregister_instances() {
	local id
	for id in "$@"; do
		curl -sf -m 5 -H @<(consul_header) -X PUT "http://$CONSUL_ADDR/v1/agent/service/deregister/$id" >/dev/null || true
	done
}

# ---------------------------------------------------------------- consul ACL tokens

# The agent runs with default-deny ACLs (consul/dev.hcl). Every token's
# secret is generated once per checkout into var/data/consul-tokens.env
# (mode 600, "NAME=<uuid>" a line, kept across `make down`/`make up`, never
# committed); consul/acl-bootstrap.sh creates the tokens with these secrets
# after every start of the agent. The management token is the operator's
# (the Consul UI), also in var/data/consul-operator.token; the agent's
# config file var/data/consul-acl.hcl names it and the agent's own token.
# Each service gets its token as CONSUL_HTTP_TOKEN (start_service), the
# edge's consul-template the token edge (scripts/edge.sh), the tests the
# token test (platform/testenv). docs/security.md: what each may do.
CONSUL_TOKEN_NAMES=(management agent "${SERVICES[@]}" edge test)

consul_tokens_file() { printf '%s/consul-tokens.env
' "$DATA_DIR"; }
consul_operator_token_file() { printf '%s/consul-operator.token
' "$DATA_DIR"; }
consul_acl_config() { printf '%s/consul-acl.hcl
' "$DATA_DIR"; }

# consul_token NAME: the secret of the stack's token NAME (empty: none).
consul_token() {
	local f
	f=$(consul_tokens_file)
	[[ -r $f ]] || return 0
	sed -n "s/^$1=//p" "$f" | head -n 1
}

# ensure_consul_tokens: a secret for every token that has none yet, the
# operator's token file and the agent's ACL config, all mode 600.
ensure_consul_tokens() {
	local f name
	f=$(consul_tokens_file)
	mkdir -p "$DATA_DIR"
	(
		umask 077
		touch "$f"
		for name in "${CONSUL_TOKEN_NAMES[@]}"; do
			grep -q "^$name=" "$f" || printf '%s=%s\n' "$name" "$(cat /proc/sys/kernel/random/uuid)" >>"$f"
		done
		consul_token management >"$(consul_operator_token_file).partial"
		printf 'acl {\n  tokens {\n    initial_management = "%s"\n    agent              = "%s"\n  }\n}\n' \
			"$(consul_token management)" "$(consul_token agent)" >"$(consul_acl_config).partial"
	)
	mv "$(consul_operator_token_file).partial" "$(consul_operator_token_file)"
	mv "$(consul_acl_config).partial" "$(consul_acl_config)"
	chmod 600 "$f" "$(consul_operator_token_file)" "$(consul_acl_config)"
}

# consul_header: the X-Consul-Token header of the scripts' own requests to
# the agent: the operator's token, or CONSUL_HTTP_TOKEN in a var/ without
# tokens (an e2e test's); nothing without either. Curl reads it through
# -H @<(consul_header), so the token never shows in argv.
consul_header() {
	local t
	t=$(consul_token management)
	t=${t:-${CONSUL_HTTP_TOKEN:-}}
	[[ -z $t ]] || printf 'X-Consul-Token: %s\n' "$t"
}

# consul_acl_ours: the agent has ACLs on and takes this checkout's
# management token.
consul_acl_ours() {
	[[ -n $(consul_token management) ]] || return 1
	[[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' -H @<(consul_header) "http://$CONSUL_ADDR/v1/acl/token/self" 2>/dev/null) == 200 ]]
}

# consul_acl_bootstrap: the tokens and policies on the agent, made current.
consul_acl_bootstrap() {
	CONSUL_HTTP_ADDR="$CONSUL_ADDR" ACL_BOOTSTRAP_TIMEOUT="$TIMEOUT_CONSUL" \
		"$R/consul/acl-bootstrap.sh" "$(consul_tokens_file)" >>"$(logfile consul)" 2>&1
}

# ---------------------------------------------------------------- services

# service_instances SVC: names of the running instances of SVC (svc, svc-2, ...).
service_instances() {
	local f n
	for f in "$RUN_DIR/$1.pid" "$RUN_DIR/$1"-[0-9]*.pid; do
		[[ -e $f ]] || continue
		n=$(basename "$f" .pid)
		[[ $n == "$1" || $n =~ ^$1-[0-9]+$ ]] || continue
		is_running "$n" && printf '%s\n' "$n"
	done
	return 0
}

# ---------------------------------------------------------------- service accounts

# The services that call others with a service token from auth (client
# credentials), from scripts/service-accounts (which docker/secrets.sh
# reads too): the account, then its scopes (SERVICE_ACCOUNT_SCOPE, bucket
# scopes of filestorage). Their secrets are generated once per
# checkout into var/data/service-accounts.env (mode 600, kept across
# `make down`/`make up`, never committed) and handed to the processes in
# their environment: auth gets SERVICE_CLIENTS, each account its own
# SERVICE_CLIENT_ID and SERVICE_CLIENT_SECRET.
SERVICE_ACCOUNTS=()
declare -A SERVICE_ACCOUNT_SCOPE=()
while read -r _account _scopes; do
	[[ -n $_account ]] || continue
	SERVICE_ACCOUNTS+=("$_account")
	SERVICE_ACCOUNT_SCOPE[$_account]=$_scopes
done < <(sed -e 's/#.*//' "$R/scripts/service-accounts")
unset _account _scopes

service_accounts_file() { printf '%s/service-accounts.env\n' "$DATA_DIR"; }

# ensure_secrets FILE NAME...: writes FILE (mode 600) with a random secret
# per NAME, "NAME=<48 hex>" a line. Secrets already in FILE are kept; a NAME
# it lacks (a user or account added to its list since) is appended.
ensure_secrets() {
	local f=$1 name missing=()
	shift
	for name in "$@"; do
		[[ -s $f ]] && grep -q "^$name=" "$f" && continue
		missing+=("$name")
	done
	((${#missing[@]} > 0)) || return 0
	mkdir -p "$(dirname "$f")"
	(
		umask 077
		{
			[[ ! -s $f ]] || cat "$f"
			for name in "${missing[@]}"; do
				printf '%s=%s\n' "$name" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
			done
		} >"$f.partial"
	)
	mv "$f.partial" "$f"
}

# ensure_service_secrets: every secret the stack's services start with: the
# service accounts', auth's key-encryption key and the gateway's link key.
ensure_service_secrets() {
	ensure_secrets "$(service_accounts_file)" "${SERVICE_ACCOUNTS[@]}"
	ensure_auth_kek
	ensure_gateway_link_key
}

# ensure_key_file FILE BYTES [FROM]: FILE holds BYTES random bytes as hex
# characters (mode 600), generated once and kept; when FILE is missing and
# FROM holds a key, FROM's is taken over instead.
ensure_key_file() {
	local f=$1 n=$2 from=${3:-}
	[[ -s $f ]] && return 0
	mkdir -p "$(dirname "$f")"
	(
		umask 077
		if [[ -n $from && -s $from ]]; then
			cat "$from"
		else
			od -An -N"$n" -tx1 /dev/urandom | tr -d ' \n'
		fi >"$f.partial"
	)
	mv "$f.partial" "$f"
}

# The gateway's link key (GATEWAY_LINK_KEY_FILE): signs the web page's
# short-lived MP3 links; every gateway replica of the stack reads the same
# file. 48 hex characters, mode 600, kept across `make down`/`make up`.
gateway_link_key_file() { printf '%s/gateway-link-key\n' "$DATA_DIR"; }

ensure_gateway_link_key() { ensure_key_file "$(gateway_link_key_file)" 24; }

# auth's key-encryption key (AUTH_KEK_FILE): seals the signing keys' private
# seeds in PostgreSQL. The local PostgreSQL server and its audiomill_auth
# database belong to the machine, not to a checkout: every checkout that runs
# `make up` here uses them. So the KEK that opens them lives beside the
# machine's state too, $STATE_DIR/auth-kek (mode 600, 32 random bytes as 64
# hex characters, generated once, never committed, never in the database); a
# KEK per checkout would leave a second checkout (a CI clone) with a key that
# does not open the keys the first one sealed. A checkout's var/data/auth-kek
# from before is adopted when the machine has none. Losing it loses the
# signing keys: docs/operations.md.
auth_kek_file() { printf '%s/auth-kek\n' "$STATE_DIR"; }

ensure_auth_kek() { ensure_key_file "$(auth_kek_file)" 32 "$DATA_DIR/auth-kek"; }

# ---------------------------------------------------------------- rabbitmq users

# A RabbitMQ user per service that speaks AMQP, with permissions on its own
# queues and the exchange it uses (scripts/rabbitmq-users: user, configure,
# write, read). scripts/deps.sh creates them (management API, as the
# broker's admin, guest on loopback) with passwords generated once into
# var/data/rabbitmq-users.env (mode 600); service_env hands each service its
# AMQP_URL.
declare -A RABBITMQ_PERMS=()
RABBITMQ_USERS=()
while read -r _user _configure _write _read; do
	[[ -n $_user ]] || continue
	RABBITMQ_USERS+=("$_user")
	RABBITMQ_PERMS[$_user]="$_configure $_write $_read"
done < <(sed -e 's/#.*//' "$R/scripts/rabbitmq-users")
unset _user _configure _write _read

rabbitmq_users_file() { printf '%s/rabbitmq-users.env\n' "$DATA_DIR"; }

# rabbitmq_amqp_url SVC: SVC's AMQP URL on the local broker, empty when SVC
# has no user (or its password was not generated yet).
rabbitmq_amqp_url() {
	local f secret
	f=$(rabbitmq_users_file)
	[[ -n ${RABBITMQ_PERMS[$1]:-} && -r $f ]] || return 0
	secret=$(sed -n "s/^$1=//p" "$f")
	[[ -z $secret ]] || printf 'amqp://%s:%s@127.0.0.1:%s/\n' "$1" "$secret" "$AMQP_PORT"
}

# service_env SVC: the VAR=value settings the stack gives SVC, one a line.
service_env() {
	local f account secret amqp clients=()
	database_url "$1"
	# Its Consul ACL token: it may register only its own service name.
	[[ -z $(consul_token "$1") ]] || printf 'CONSUL_HTTP_TOKEN=%s\n' "$(consul_token "$1")"
	[[ $1 != auth ]] || printf 'AUTH_KEK_FILE=%s\n' "$(auth_kek_file)"
	[[ $1 != gateway || ! -s $(gateway_link_key_file) ]] || printf 'GATEWAY_LINK_KEY_FILE=%s\n' "$(gateway_link_key_file)"
	amqp=$(rabbitmq_amqp_url "$1")
	[[ -z $amqp ]] || printf 'AMQP_URL=%s\n' "$amqp"
	# The disk backend, when chosen, keeps its files under var/ too.
	[[ $1 != filestorage ]] || printf 'FILESTORAGE_DIR=%s\n' "${FILESTORAGE_DIR:-$DATA_DIR/files}"
	f=$(service_accounts_file)
	[[ -r $f ]] || return 0
	case $1 in
	auth)
		# The local stack's tests and benchmarks sign up many users from
		# 127.0.0.1 (docs/configuration.md).
		printf 'SIGNUP_MAX_PER_CLIENT=%s\n' "${SIGNUP_MAX_PER_CLIENT:-100000}"
		while IFS='=' read -r account secret; do
			[[ -n ${SERVICE_ACCOUNT_SCOPE[$account]:-} ]] || continue
			clients+=("$account:$secret:${SERVICE_ACCOUNT_SCOPE[$account]}")
		done <"$f"
		(
			IFS=,
			printf 'SERVICE_CLIENTS=%s\n' "${clients[*]}"
		)
		;;
	*) # an account's (others have no secret)
		secret=$(sed -n "s/^$1=//p" "$f")
		[[ -n $secret ]] || return 0
		printf 'SERVICE_CLIENT_ID=%s\nSERVICE_CLIENT_SECRET=%s\n' "$1" "$secret"
		;;
	esac
}

# ---------------------------------------------------------------- postgres

# The services that keep records in PostgreSQL. Each gets its own database
# and role, both named audiomill_<service>, owning nothing else; the test
# role audiomill_test may only create (its own, throwaway) databases.
# Passwords are generated once per checkout into var/data/postgres.env
# (mode 600, kept across `make down`/`make up`, never committed).
PG_SERVICES=(auth gateway)
PG_TEST_ROLE=audiomill_test

postgres_secrets_file() { printf '%s/postgres.env\n' "$DATA_DIR"; }

ensure_postgres_secrets() { ensure_secrets "$(postgres_secrets_file)" "${PG_SERVICES[@]}" test; }

# postgres_password NAME: the generated password of NAME (a service, or test).
postgres_password() {
	local f
	f=$(postgres_secrets_file)
	[[ -r $f ]] || return 0
	sed -n "s/^$1=//p" "$f"
}

# records_migrated_marker: written by scripts/migrate-from-mongo.sh once the
# records of a stack from before PostgreSQL are copied.
records_migrated_marker() { printf '%s/records-migrated\n' "$DATA_DIR"; }

# old_records: names the databases of FerretDB's files that hold records of a
# stack from before PostgreSQL and have not been copied yet (none: empty).
old_records() {
	local db found=()
	[[ -e $(records_migrated_marker) ]] && return 0
	for db in audiomill_auth audiomill_gateway; do
		[[ -s $DATA_DIR/ferretdb/$db.sqlite ]] && found+=("$db")
	done
	((${#found[@]} == 0)) || printf '%s\n' "${found[*]}"
}

# database_url SVC: "DATABASE_URL=..." for a service that keeps records in
# PostgreSQL (AUTH_DATABASE_URL / GATEWAY_DATABASE_URL, when set, win).
database_url() {
	local svc=$1 override pw
	[[ " ${PG_SERVICES[*]} " == *" $svc "* ]] || return 0
	override="${svc^^}_DATABASE_URL"
	if [[ -n ${!override:-} ]]; then
		printf 'DATABASE_URL=%s\n' "${!override}"
		return 0
	fi
	pw=$(postgres_password "$svc")
	[[ -n $pw ]] || return 0
	# The server is this machine's, over loopback: no TLS to pay for.
	printf 'DATABASE_URL=postgres://audiomill_%s:%s@%s:%s/audiomill_%s?sslmode=disable\n' "$svc" "$pw" "$PG_HOST" "$PG_PORT" "$svc"
}

# start_service NAME SVC: starts an instance of SVC under the process name
# NAME with the stack's settings for SVC (PORT and SERVICE_ID come from the caller).
start_service() {
	local settings=()
	mapfile -t settings < <(service_env "$2")
	(
		((${#settings[@]} == 0)) || export "${settings[@]}"
		start_detached "$1" "$BIN_DIR/$2"
	)
}

# ---------------------------------------------------------------- edge

# The edge's nginx: own prefix, config, pid and logs under var/, so it never
# touches a system nginx. Exported for nginx/reload.sh (run by consul-template).
edge_env() {
	export EDGE_HOST EDGE_PORT
	# The local stack's tests and benchmarks sign up many users from one
	# address; the template's defaults (6r/m, 5) are for a public edge.
	export EDGE_SIGNUP_RATE="${EDGE_SIGNUP_RATE:-50r/s}" EDGE_SIGNUP_BURST="${EDGE_SIGNUP_BURST:-100}"
	export EDGE_PREFIX="$NGINX_DIR"
	export EDGE_CONF="$NGINX_DIR/nginx.conf"
	export EDGE_RENDERED="$NGINX_DIR/nginx.conf.rendered"
	export EDGE_PID="$NGINX_DIR/nginx.pid"
	export EDGE_ERROR_LOG="$LOG_DIR/nginx-error.log"
	export EDGE_ACCESS_LOG="$LOG_DIR/nginx-access.log"
}

# edge_url [PATH]: the edge's URL.
edge_url() {
	local host=$EDGE_HOST
	[[ $host != 0.0.0.0 ]] || host=127.0.0.1
	printf 'http://%s:%s%s\n' "$host" "$EDGE_PORT" "${1:-}"
}

edge_ready() { [[ $(http_code "$(edge_url /healthz)") == 200 ]]; }
