#!/bin/sh
# Generates the secrets docker-compose.yml hands to the containers, once:
#   docker/secrets.sh [DIR]      (DIR: docker/secrets, gitignored)
# Existing files are kept, so running it again changes nothing; delete a file
# to have it generated anew (then recreate the containers that use it).
#
#   <account>_client_secret (gateway_client_secret, converter_client_secret)
#       each service account's secret (its SERVICE_CLIENT_SECRET), 48 hex
#       characters from /dev/urandom; the accounts are scripts/service-accounts
#   service_clients
#       auth's SERVICE_CLIENTS_FILE: one `id:secret:scope scope…` line per
#       account, with the account's scopes from scripts/service-accounts
#   postgres_password, auth_db_password, gateway_db_password
#       PostgreSQL's superuser password (the postgres container's
#       POSTGRES_PASSWORD_FILE) and the passwords of the roles audiomill_auth
#       and audiomill_gateway (docker/postgres-init.sh creates them; the
#       services get theirs as PGPASSWORD_FILE)
#   auth_kek
#       auth's AUTH_KEK_FILE: the key-encryption key that seals the signing
#       keys' private seeds in PostgreSQL, 32 random bytes as 64 hex
#       characters. Losing it loses the signing keys (everyone logs in
#       again); keep a copy apart from the database's backups
#   gateway_link_key
#       the gateway's GATEWAY_LINK_KEY_FILE: the HMAC key of the web page's
#       signed MP3 links, 24 random bytes as 48 hex characters; every gateway
#       replica mounts the same file
#   smtp_password
#       the notifier's SMTP_PASSWORD: empty (MailDev needs none); put a real
#       relay's password here, and SMTP_USERNAME in docker-compose.yml
#   consul_<name>_token (management, agent, auth, filestorage, gateway,
#   converter, notifier, edge)
#       the secret of each Consul ACL token (docs/security.md): a random UUID,
#       the only form Consul takes as a token's SecretID. management is the
#       operator's token (the Consul UI); each service gets its own as
#       CONSUL_HTTP_TOKEN_FILE, the edge's consul-template the edge's
#   consul_tokens.env, consul_acl.hcl
#       rewritten on every run from the consul_*_token files: the NAME=<secret>
#       list consul/acl-bootstrap.sh creates the tokens from (the consul-acl
#       container), and the agent's ACL tokens (initial_management, agent)
#       for the consul container, beside consul/dev.hcl
#   <user>_amqp_url (auth_amqp_url, gateway_amqp_url, converter_amqp_url,
#   notifier_amqp_url)
#       each service's AMQP_URL_FILE: amqp://<user>:<password>@rabbitmq:5672/
#       with a password of 48 hex characters; the users and their
#       permissions are scripts/rabbitmq-users, the list `make up` uses
#   rabbitmq_admin_password
#       the password of the broker's administrator `admin` (the management
#       UI on http://localhost:15672); no container mounts it
#   rabbitmq_definitions.json
#       rewritten on every run from the files above and scripts/rabbitmq-users:
#       the definitions RabbitMQ loads at boot (docker/rabbitmq.conf): the
#       vhost /, the users with their password hashes (base64 of a 4-byte
#       salt followed by SHA-256(salt + password), RabbitMQ's
#       rabbit_password_hashing_sha256; a hash that still matches its
#       password keeps its salt, so a second run writes the same file) and
#       their permissions. There is no guest
#   redis_password, redis.conf
#       Redis's password (REDIS_PASSWORD_FILE of the services that use
#       Redis) and, rewritten on every run from it, the `requirepass` line
#       the redis container's server reads
#   mongo_root_password, filestorage_mongo_uri
#       MongoDB's root password (the mongo container's
#       MONGO_INITDB_ROOT_PASSWORD_FILE, used when its volume is new) and,
#       rewritten on every run from it, filestorage's MONGO_URI_FILE:
#       mongodb://root:<password>@mongo:27017/?authSource=admin
#
# The directory is mode 700 (only you read it on this machine); the files in
# it are 644, because compose bind-mounts each one into /run/secrets of the
# containers that name it as it is (compose ignores a file secret's
# uid/gid/mode), where the services, Consul and the edge run as non-root
# users that must read it. They never enter an image (.dockerignore).
# docker/entrypoint.sh turns NAME_FILE into NAME for the services that take
# only the variable.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/secrets"}
# The service accounts: the one list, shared with the local stack; each
# line is the account, then its scopes.
list=$here/../scripts/service-accounts
accounts=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/^[[:space:]]*\([^[:space:]]*\).*/\1/' "$list")
# scope_of ACCOUNT: the account's scopes, space-separated.
scope_of() {
	sed -e 's/#.*//' "$list" | awk -v a="$1" '$1 == a { $1 = ""; sub(/^ +/, ""); print }'
}

mkdir -p "$dir"
chmod 700 "$dir"
umask 022

random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

# ensure_secret NAME: writes a random secret into NAME unless it has one.
ensure_secret() {
	f="$dir/$1"
	if [ ! -s "$f" ]; then
		random_secret >"$f.partial"
		mv "$f.partial" "$f"
		echo "secrets: generated $f"
	fi
}

# rewrite NAME: moves NAME.partial (just written) over NAME.
rewrite() { mv "$dir/$1.partial" "$dir/$1"; }

# random_uuid: 128 random bits written as a UUID (8-4-4-4-12 hex digits).
random_uuid() {
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' |
		sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)\(.\{12\}\)$/\1-\2-\3-\4-\5/'
}

# The Consul ACL tokens: the names consul/acl-bootstrap.sh creates, less the
# tests' (compose runs no tests).
consul_tokens="management agent auth filestorage gateway converter notifier edge"

for f in postgres_password auth_db_password gateway_db_password; do
	f="$dir/$f"
	if [ ! -s "$f" ]; then
		random_secret >"$f.partial"
		mv "$f.partial" "$f"
		echo "secrets: generated $f"
	fi
done

f="$dir/auth_kek"
if [ ! -s "$f" ]; then
	od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$f.partial"
	mv "$f.partial" "$f"
	echo "secrets: generated $f"
fi

f="$dir/gateway_link_key"
if [ ! -s "$f" ]; then
	od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$f.partial"
	mv "$f.partial" "$f"
	echo "secrets: generated $f"
fi

for account in $accounts; do
	f="$dir/${account}_client_secret"
	if [ ! -s "$f" ]; then
		random_secret >"$f.partial"
		mv "$f.partial" "$f"
		echo "secrets: generated $f"
	fi
done

# auth's list follows the accounts' secrets (rewritten on every run).
{
	echo "# generated by docker/secrets.sh from the *_client_secret files"
	for account in $accounts; do
		printf '%s:%s:%s\n' "$account" "$(cat "$dir/${account}_client_secret")" "$(scope_of "$account")"
	done
} >"$dir/service_clients.partial"
mv "$dir/service_clients.partial" "$dir/service_clients"

[ -e "$dir/smtp_password" ] || : >"$dir/smtp_password"

for name in $consul_tokens; do
	f="$dir/consul_${name}_token"
	if [ ! -s "$f" ]; then
		printf '%s' "$(random_uuid)" >"$f.partial"
		mv "$f.partial" "$f"
		echo "secrets: generated $f"
	fi
done

# What consul/acl-bootstrap.sh and the agent read follows the token files
# (rewritten on every run).
consul_token() { cat "$dir/consul_$1_token"; }
{
	echo "# generated by docker/secrets.sh from the consul_*_token files"
	for name in $consul_tokens; do
		printf '%s=%s\n' "$name" "$(consul_token "$name")"
	done
} >"$dir/consul_tokens.env.partial"
mv "$dir/consul_tokens.env.partial" "$dir/consul_tokens.env"
{
	echo "# generated by docker/secrets.sh: the Consul agent's ACL tokens (consul/dev.hcl has the rest)"
	printf 'acl {\n  tokens {\n    initial_management = "%s"\n    agent              = "%s"\n  }\n}\n' \
		"$(consul_token management)" "$(consul_token agent)"
} >"$dir/consul_acl.hcl.partial"
mv "$dir/consul_acl.hcl.partial" "$dir/consul_acl.hcl"

# ------------------------------------------------------------ RabbitMQ
# The users: scripts/rabbitmq-users (user, configure, write, read), the
# one list, shared with the local stack.
rabbit_list=$here/../scripts/rabbitmq-users
rabbit_users=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/^[[:space:]]*\([^[:space:]]*\).*/\1/' "$rabbit_list")
# rabbit_perm USER N: field N (2 configure, 3 write, 4 read) of USER's
# line, as a JSON string's content (backslashes doubled).
rabbit_perm() {
	sed -e 's/#.*//' "$rabbit_list" | awk -v u="$1" -v n="$2" '$1 == u { print $n }' | sed 's/\\/\\\\/g'
}

for user in $rabbit_users; do
	f="$dir/${user}_amqp_url"
	if [ ! -s "$f" ]; then
		printf 'amqp://%s:%s@rabbitmq:5672/' "$user" "$(random_secret)" >"$f.partial"
		mv "$f.partial" "$f"
		echo "secrets: generated $f"
	fi
done
ensure_secret rabbitmq_admin_password

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
definitions=$dir/rabbitmq_definitions.json

# salted_hash SALT_FILE PASSWORD: base64(salt + SHA-256(salt + password)),
# RabbitMQ's rabbit_password_hashing_sha256. The password goes through
# printf, a shell builtin: it never appears in a process's arguments.
salted_hash() {
	{
		cat "$1"
		printf '%s' "$2"
	} | openssl dgst -sha256 -binary >"$tmp/digest"
	cat "$1" "$tmp/digest" | openssl base64 -A
}

# password_hash USER PASSWORD: USER's hash in the definitions; the one of
# the previous run when it still matches PASSWORD, else with a new salt.
password_hash() {
	old=""
	[ ! -s "$definitions" ] ||
		old=$(sed -n "s/.*\"name\": \"$1\", \"password_hash\": \"\([^\"]*\)\".*/\1/p" "$definitions")
	if [ -n "$old" ] && printf '%s' "$old" | openssl base64 -d -A >"$tmp/old" 2>/dev/null &&
		dd if="$tmp/old" of="$tmp/salt" bs=4 count=1 2>/dev/null &&
		[ "$(salted_hash "$tmp/salt" "$2")" = "$old" ]; then
		printf '%s' "$old"
		return
	fi
	dd if=/dev/urandom of="$tmp/salt" bs=4 count=1 2>/dev/null
	salted_hash "$tmp/salt" "$2"
}

# amqp_password USER: the password in USER's AMQP URL.
amqp_password() { sed -n 's|^amqp://[^:]*:\([^@]*\)@.*|\1|p' "$dir/$1_amqp_url"; }

{
	echo '{'
	echo '  "vhosts": [{"name": "/"}],'
	echo '  "users": ['
	printf '    {"name": "admin", "password_hash": "%s", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}' \
		"$(password_hash admin "$(cat "$dir/rabbitmq_admin_password")")"
	for user in $rabbit_users; do
		printf ',\n    {"name": "%s", "password_hash": "%s", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}' \
			"$user" "$(password_hash "$user" "$(amqp_password "$user")")"
	done
	printf '\n  ],\n'
	echo '  "permissions": ['
	printf '    {"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}'
	for user in $rabbit_users; do
		printf ',\n    {"user": "%s", "vhost": "/", "configure": "%s", "write": "%s", "read": "%s"}' \
			"$user" "$(rabbit_perm "$user" 2)" "$(rabbit_perm "$user" 3)" "$(rabbit_perm "$user" 4)"
	done
	printf '\n  ]\n}\n'
} >"$definitions.partial"
rewrite rabbitmq_definitions.json

# ------------------------------------------------------------ Redis, MongoDB
ensure_secret redis_password
{
	echo "# generated by docker/secrets.sh from redis_password"
	printf 'requirepass %s\n' "$(cat "$dir/redis_password")"
} >"$dir/redis.conf.partial"
rewrite redis.conf

ensure_secret mongo_root_password
printf 'mongodb://root:%s@mongo:27017/?authSource=admin' "$(cat "$dir/mongo_root_password")" >"$dir/filestorage_mongo_uri.partial"
rewrite filestorage_mongo_uri

echo "secrets: $dir is ready"
