#!/usr/bin/env bash
# The stack's dependencies, without the services:
#   Consul (dev agent), PostgreSQL (with each service's database and role),
#   FerretDB (or the MongoDB named by MONGO_URI), Redis,
#   RabbitMQ (with its management UI), MailDev.
# Usage: scripts/deps.sh start|stop|status
# A dependency already answering on its port (Redis, RabbitMQ, or the Consul,
# database and MailDev of another checkout's stack) is reused and never stopped;
# what this script starts is recorded in var/run and stopped by it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: scripts/deps.sh start|stop|status"; }

# already_running PROC LABEL: true (and says so) when PROC runs from an earlier start.
already_running() {
	local pid
	pid=$(proc_pid "$1")
	[[ -n $pid ]] || return 1
	say "$2: running (pid $pid)"
}

# port_free_or_fail PART HOST PORT: a port we are about to listen on must be free.
port_free_or_fail() {
	if port_open "$2" "$3"; then
		fail_part "$1" "port $3 on $2 is taken by another process $(port_owner "$3"); stop it, or stop the stack that owns it"
	fi
}

# ---------------------------------------------------------------- consul

start_consul() {
	ensure_consul_tokens
	if ! is_running consul && consul_has_leader; then
		consul_acl_ours || fail_part consul "the agent on $CONSUL_ADDR was not started by this checkout and does not take its operator token (${DATA_DIR#"$R"/}/consul-operator.token): it runs without ACLs or with another checkout's tokens; stop it, or stop the stack that started it"
		consul_acl_bootstrap || fail_part consul "creating the ACL tokens failed" "$(logfile consul)"
		say "consul: reusing the agent on $CONSUL_ADDR (not started by this checkout), ACL tokens current"
		return
	fi
	# An agent of an earlier version (no ACLs, or other tokens) is restarted
	# with ACLs; every service then restarts too, with its token.
	if is_running consul && consul_has_leader && ! consul_acl_ours; then
		say "consul: the running agent has no ACLs or other tokens; restarting it with ACLs (the services restart with their tokens)"
		stop_proc consul
		rm -f "$RUN_DIR"/*.key
	fi
	if ! already_running consul consul; then
		local bin
		bin=$(consul_bin)
		need_tool "$bin" consul
		port_free_or_fail consul 127.0.0.1 "${CONSUL_ADDR##*:}"
		start_detached consul "$bin" agent -dev -config-file="$R/consul/dev.hcl" -config-file="$(consul_acl_config)"
		say "consul: started (pid $(proc_pid consul)), UI http://localhost:${CONSUL_ADDR##*:}/ui"
	fi
	await consul consul "$(logfile consul)" "$TIMEOUT_CONSUL" "leader at http://$CONSUL_ADDR/v1/status/leader" consul_has_leader
	# The dev agent keeps nothing: the tokens are made again, same secrets.
	consul_acl_bootstrap || fail_part consul "creating the ACL tokens failed" "$(logfile consul)"
	say "consul: default-deny ACLs, a token per service (secrets in ${DATA_DIR#"$R"/}/consul-tokens.env)"
}

# ---------------------------------------------------------------- mongo

# mongo_host_port URI: the first host:port of a mongodb:// URI.
mongo_host_port() {
	local rest=${1#*://}
	rest=${rest#*@}
	rest=${rest%%[/?]*}
	rest=${rest%%,*}
	[[ $rest == *:* ]] || rest="$rest:27017"
	printf '%s\n' "$rest"
}

ferretdb_ready() { port_open "${FERRETDB_ADDR%:*}" "${FERRETDB_ADDR##*:}"; }

start_mongo() {
	if [[ -n ${MONGO_URI:-} ]]; then
		check_external_mongo
		return
	fi
	if ! is_running ferretdb && ferretdb_ready; then
		say "ferretdb: reusing the database on $FERRETDB_ADDR (not started by this checkout)"
		return
	fi
	# A launcher built from other sources than tools/ferretdb's now (its
	# binary is another file of the cache) is restarted on the current one;
	# the data directory stays.
	if is_running ferretdb && ! runs_program ferretdb "$(ferretdb_bin)"; then
		say "ferretdb: tools/ferretdb changed; restarting it on $(ferretdb_bin)"
		stop_proc ferretdb
	fi
	if ! already_running ferretdb ferretdb; then
		local bin
		bin=$(ferretdb_bin)
		need_tool "$bin" "ferretdb launcher"
		port_free_or_fail ferretdb "${FERRETDB_ADDR%:*}" "${FERRETDB_ADDR##*:}"
		mkdir -p "$DATA_DIR/ferretdb"
		start_detached ferretdb "$bin" -listen "$FERRETDB_ADDR" -data "$DATA_DIR/ferretdb"
		say "ferretdb: started (pid $(proc_pid ferretdb)), mongodb://$FERRETDB_ADDR/ data in ${DATA_DIR#"$R"/}/ferretdb"
	fi
	await ferretdb ferretdb "$(logfile ferretdb)" "$TIMEOUT_FERRETDB" "MongoDB wire protocol on $FERRETDB_ADDR" ferretdb_ready
}

check_external_mongo() {
	if [[ $MONGO_URI == mongodb+srv://* ]]; then
		say "mongodb: MONGO_URI is a mongodb+srv:// URI; FerretDB not started, not checked here"
		return
	fi
	local hp
	hp=$(mongo_host_port "$MONGO_URI")
	port_open "${hp%:*}" "${hp##*:}" ||
		fail_part mongodb "MONGO_URI is set but nothing answers on $hp"
	say "mongodb: MONGO_URI set, $hp answers (FerretDB not started)"
}

# ---------------------------------------------------------------- redis

redis_ready() { port_open 127.0.0.1 "$REDIS_PORT"; }

start_redis() {
	local marker="$RUN_DIR/redis.started"
	if redis_ready; then
		if [[ -e $marker ]]; then
			say "redis: running (started by this stack, pid $(proc_pid redis))"
		else
			say "redis: reusing the server on 127.0.0.1:$REDIS_PORT"
		fi
		return
	fi
	rm -f "$marker"
	command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed; run scripts/install.sh"
	mkdir -p "$DATA_DIR/redis"
	redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
		--dir "$DATA_DIR/redis" --pidfile "$(pidfile redis)" --logfile "$(logfile redis)" ||
		fail_part redis "redis-server did not start" "$(logfile redis)"
	touch "$marker"
	await redis "" "$(logfile redis)" "$TIMEOUT_REDIS" "127.0.0.1:$REDIS_PORT" redis_ready
	say "redis: started (pid $(proc_pid redis)), 127.0.0.1:$REDIS_PORT, data in ${DATA_DIR#"$R"/}/redis"
}

stop_redis() {
	local marker="$RUN_DIR/redis.started"
	if [[ ! -e $marker ]]; then
		say "redis: left running (not started by this stack)"
		return
	fi
	stop_proc redis
	rm -f "$marker"
}

# ---------------------------------------------------------------- postgres

postgres_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# pg_admin: psql as a superuser, SQL on stdin: POSTGRES_ADMIN_URL when
# set, else the local server's postgres account (through its socket when we
# are root, as Debian's peer authentication expects; else over TCP).
pg_admin() {
	if [[ -n ${POSTGRES_ADMIN_URL:-} ]]; then
		psql -X -q -v ON_ERROR_STOP=1 "$POSTGRES_ADMIN_URL"
	elif ((EUID == 0)) && id postgres >/dev/null 2>&1; then
		(cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres)
	else
		psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres
	fi
}

start_postgres() {
	local marker="$RUN_DIR/postgres.started" log ver
	log=$(logfile postgres)
	if [[ -n ${POSTGRES_ADMIN_URL:-} ]]; then
		say "postgres: POSTGRES_ADMIN_URL set; provisioning there (no local server started)"
	elif postgres_ready; then
		if [[ -e $marker ]]; then
			say "postgres: running (started by this stack)"
		else
			say "postgres: reusing the server on $PG_HOST:$PG_PORT"
		fi
	else
		rm -f "$marker"
		command -v pg_ctlcluster >/dev/null 2>&1 || die "postgresql is not installed; run scripts/install.sh"
		if [[ -z $(pg_lsclusters -h 2>/dev/null) ]]; then
			ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
			printf '\n=== %s pg_createcluster %s main\n' "$(date -u +%FT%TZ)" "$ver" >>"$log"
			pg_createcluster "$ver" main >>"$log" 2>&1 || fail_part postgres "pg_createcluster $ver main failed" "$log"
		fi
		while read -r ver _; do
			printf '\n=== %s pg_ctlcluster %s main start\n' "$(date -u +%FT%TZ)" "$ver" >>"$log"
			pg_ctlcluster --skip-systemctl-redirect "$ver" main start >>"$log" 2>&1 || true
		done < <(pg_lsclusters -h 2>/dev/null)
		touch "$marker"
		await postgres "" "$log" "$TIMEOUT_POSTGRES" "PostgreSQL on $PG_HOST:$PG_PORT" postgres_ready
		say "postgres: started, $PG_HOST:$PG_PORT"
	fi
	provision_postgres
}

# provision_postgres: each service's role and database, and the test role,
# created when missing; passwords (re)set from var/data/postgres.env.
provision_postgres() {
	local svc role pw sql="" log
	log=$(logfile postgres)
	ensure_postgres_secrets
	for svc in "${PG_SERVICES[@]}"; do
		role="audiomill_$svc"
		pw=$(postgres_password "$svc")
		sql+="
select 'create role $role login' where not exists (select from pg_roles where rolname = '$role')\gexec
alter role $role login nosuperuser nocreatedb nocreaterole password '$pw';
select 'create database $role owner $role' where not exists (select from pg_database where datname = '$role')\gexec
revoke all on database $role from public;
grant connect, temporary on database $role to $role;"
	done
	pw=$(postgres_password test)
	sql+="
select 'create role $PG_TEST_ROLE login' where not exists (select from pg_roles where rolname = '$PG_TEST_ROLE')\gexec
alter role $PG_TEST_ROLE login nosuperuser createdb nocreaterole password '$pw';"
	# The SQL (passwords included) goes through stdin, never argv.
	pg_admin >>"$log" 2>&1 <<<"$sql" || fail_part postgres "creating the services' roles and databases failed" "$log"
	say "postgres: databases $(printf 'audiomill_%s ' "${PG_SERVICES[@]}")ready (roles of the same names; passwords in ${DATA_DIR#"$R"/}/postgres.env)"
}

stop_postgres() {
	local marker="$RUN_DIR/postgres.started" ver
	if [[ ! -e $marker ]]; then
		say "postgres: left running (not started by this stack)"
		return
	fi
	while read -r ver _; do
		pg_ctlcluster --skip-systemctl-redirect "$ver" main stop >>"$(logfile postgres)" 2>&1 || true
	done < <(pg_lsclusters -h 2>/dev/null)
	rm -f "$marker"
	say "postgres: stopped"
}

# ---------------------------------------------------------------- rabbitmq

amqp_ready() { port_open 127.0.0.1 "$AMQP_PORT"; }
rabbit_ui_ready() { [[ $(http_code "http://127.0.0.1:$RABBITMQ_UI_PORT/") == 200 ]]; }

# rabbit_log: the broker's own log, which says why it did not start.
rabbit_log() {
	local f newest=""
	for f in /var/log/rabbitmq/rabbit@*.log; do
		if [[ -f $f && (-z $newest || $f -nt $newest) ]]; then newest=$f; fi
	done
	printf '%s\n' "${newest:-$(logfile rabbitmq)}"
}

start_rabbitmq() {
	local marker="$RUN_DIR/rabbitmq.started" log
	log=$(logfile rabbitmq)
	if amqp_ready; then
		if [[ -e $marker ]]; then
			say "rabbitmq: running (started by this stack)"
		else
			say "rabbitmq: reusing the broker on 127.0.0.1:$AMQP_PORT"
		fi
	else
		rm -f "$marker"
		command -v rabbitmq-server >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmq-server ]] ||
			die "rabbitmq-server is not installed; run scripts/install.sh"
		printf '\n=== %s start rabbitmq-server -detached\n' "$(date -u +%FT%TZ)" >>"$log"
		PATH="$PATH:/usr/sbin" rabbitmq-server -detached </dev/null >>"$log" 2>&1 ||
			fail_part rabbitmq "rabbitmq-server -detached failed" "$log"
		touch "$marker"
		await rabbitmq "" "$(rabbit_log)" "$TIMEOUT_RABBITMQ" "AMQP on 127.0.0.1:$AMQP_PORT" amqp_ready
		say "rabbitmq: started, amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
	fi
	# Conversions may take up to CONVERTER_MAX_TIME (60 min); RabbitMQ's default
	# consumer timeout (30 min) would take the message back mid-conversion.
	PATH="$PATH:/usr/sbin" rabbitmqctl eval "application:set_env(rabbit, consumer_timeout, $RABBITMQ_CONSUMER_TIMEOUT_MS)." \
		</dev/null >>"$log" 2>&1 || warn "rabbitmq: could not raise consumer_timeout; see $log"
	if ! rabbit_ui_ready; then
		PATH="$PATH:/usr/sbin" rabbitmq-plugins enable rabbitmq_management </dev/null >>"$log" 2>&1 ||
			fail_part rabbitmq "rabbitmq-plugins enable rabbitmq_management failed" "$log"
		await "rabbitmq management" "" "$(rabbit_log)" "$TIMEOUT_RABBITMQ" \
			"management UI on 127.0.0.1:$RABBITMQ_UI_PORT" rabbit_ui_ready
	fi
	say "rabbitmq: management UI http://localhost:$RABBITMQ_UI_PORT (guest/guest)"
	ensure_rabbitmq_users
}

# ensure_rabbitmq_users: the services' users (scripts/rabbitmq-users), with
# their passwords from var/data/rabbitmq-users.env (generated once) and their
# permissions on the vhost /, through the management API as guest (which the
# broker admits from loopback only). Running it again sets the same.
ensure_rabbitmq_users() {
	local f user secret perms api="http://127.0.0.1:$RABBITMQ_UI_PORT/api" code
	f=$(rabbitmq_users_file)
	ensure_secrets "$f" "${RABBITMQ_USERS[@]}"
	for user in "${RABBITMQ_USERS[@]}"; do
		secret=$(sed -n "s/^$user=//p" "$f")
		[[ -n $secret ]] || die "rabbitmq: no password for $user in $f; delete the file to have all generated anew"
		read -r -a perms <<<"${RABBITMQ_PERMS[$user]}"
		code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -u guest:guest -H 'Content-Type: application/json' \
			-X PUT "$api/users/$user" -d "{\"password\":\"$secret\",\"tags\":\"\"}" || true)
		[[ $code == 201 || $code == 204 ]] || die "rabbitmq: creating user $user through $api answered $code"
		code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -u guest:guest -H 'Content-Type: application/json' \
			-X PUT "$api/permissions/%2F/$user" \
			-d "$(printf '{"configure":"%s","write":"%s","read":"%s"}' "${perms[0]//\\/\\\\}" "${perms[1]//\\/\\\\}" "${perms[2]//\\/\\\\}")" || true)
		[[ $code == 201 || $code == 204 ]] || die "rabbitmq: permissions of $user through $api answered $code"
	done
	say "rabbitmq: users ${RABBITMQ_USERS[*]} (passwords in $f)"
}

stop_rabbitmq() {
	local marker="$RUN_DIR/rabbitmq.started"
	if [[ ! -e $marker ]]; then
		say "rabbitmq: left running (not started by this stack)"
		return
	fi
	if amqp_ready; then
		PATH="$PATH:/usr/sbin" rabbitmqctl stop </dev/null >>"$(logfile rabbitmq)" 2>&1 ||
			warn "rabbitmqctl stop failed; see $(logfile rabbitmq)"
	fi
	rm -f "$marker"
	say "rabbitmq: stopped"
}

# ---------------------------------------------------------------- maildev

maildev_ready() { [[ $(http_code "http://127.0.0.1:$MAILDEV_WEB_PORT/email") == 200 ]]; }

start_maildev() {
	if ! is_running maildev && maildev_ready && port_open 127.0.0.1 "$SMTP_PORT"; then
		say "maildev: reusing the one on 127.0.0.1:$SMTP_PORT (not started by this checkout)"
		return
	fi
	if ! already_running maildev maildev; then
		local js
		js=$(maildev_js)
		need_tool "$js" maildev
		port_free_or_fail maildev 127.0.0.1 "$SMTP_PORT"
		port_free_or_fail maildev 127.0.0.1 "$MAILDEV_WEB_PORT"
		mkdir -p "$DATA_DIR/maildev"
		start_detached maildev node "$js" --ip 127.0.0.1 --web-ip 127.0.0.1 \
			--smtp "$SMTP_PORT" --web "$MAILDEV_WEB_PORT" --mail-directory "$DATA_DIR/maildev"
		say "maildev: started (pid $(proc_pid maildev)), SMTP 127.0.0.1:$SMTP_PORT, UI http://localhost:$MAILDEV_WEB_PORT"
	fi
	await maildev maildev "$(logfile maildev)" "$TIMEOUT_MAILDEV" \
		"REST API http://127.0.0.1:$MAILDEV_WEB_PORT/email" maildev_ready
}

# ---------------------------------------------------------------- commands

start() {
	ensure_dirs
	start_consul
	start_postgres
	start_mongo
	start_redis
	start_rabbitmq
	start_maildev
}

stop() {
	ensure_dirs
	stop_proc maildev
	stop_proc ferretdb
	stop_proc consul
	stop_redis
	stop_postgres
	stop_rabbitmq
}

# show LABEL STATE DETAIL
show() { printf '%-12s %-8s %s\n' "$1" "$2" "$3"; }

status() {
	local pid owner
	pid=$(proc_pid consul)
	if consul_has_leader; then
		show consul up "http://$CONSUL_ADDR ${pid:+pid $pid}"
	else
		show consul down "${pid:+pid $pid (no leader)}"
	fi
	if [[ -n ${MONGO_URI:-} ]]; then
		show mongodb external "MONGO_URI (host $(mongo_host_port "$MONGO_URI"))"
	else
		pid=$(proc_pid ferretdb)
		if ferretdb_ready; then show ferretdb up "mongodb://$FERRETDB_ADDR/ ${pid:+pid $pid}"; else show ferretdb down ""; fi
	fi
	owner="shared"
	[[ ! -e $RUN_DIR/postgres.started ]] || owner="ours"
	if postgres_ready; then show postgres up "$PG_HOST:$PG_PORT ($owner)"; else show postgres down ""; fi
	owner="shared"
	[[ ! -e $RUN_DIR/redis.started ]] || owner="ours"
	if redis_ready; then show redis up "127.0.0.1:$REDIS_PORT ($owner)"; else show redis down ""; fi
	owner="shared"
	[[ ! -e $RUN_DIR/rabbitmq.started ]] || owner="ours"
	if amqp_ready; then
		show rabbitmq up "127.0.0.1:$AMQP_PORT ($owner), UI $(rabbit_ui_ready && echo up || echo down)"
	else
		show rabbitmq down ""
	fi
	pid=$(proc_pid maildev)
	if maildev_ready; then show maildev up "http://127.0.0.1:$MAILDEV_WEB_PORT ${pid:+pid $pid}"; else show maildev down ""; fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
