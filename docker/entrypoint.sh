#!/bin/sh
# Entrypoint of the audiomill service images (Dockerfile): runs the image's
# service ($AUDIOMILL_SERVICE) with the arguments given, e.g.
#   docker compose run --rm auth rotate-keys
#
# Secrets come as files (docker-compose.yml `secrets:`, mounted under
# /run/secrets), never as image layers or values in docker-compose.yml. For
# each secret variable NAME below, NAME_FILE names a file whose content
# (trailing newlines removed) becomes NAME:
#   SERVICE_CLIENT_SECRET_FILE=/run/secrets/gateway_client_secret
#     -> SERVICE_CLIENT_SECRET=<the file's content>
# The same for each service's Consul ACL token:
#   CONSUL_HTTP_TOKEN_FILE=/run/secrets/consul_auth_token -> CONSUL_HTTP_TOKEN
# (the services read only CONSUL_HTTP_TOKEN, docs/configuration.md).
# Setting both NAME and NAME_FILE is an error. auth reads SERVICE_CLIENTS_FILE
# itself (one account a line), so that one is passed on as it is.
set -eu

service=${AUDIOMILL_SERVICE:?AUDIOMILL_SERVICE is not set}

for name in SERVICE_CLIENT_SECRET SMTP_PASSWORD ADMIN_PASSWORD REDIS_PASSWORD AMQP_URL MONGO_URI DATABASE_URL PGPASSWORD CONSUL_HTTP_TOKEN; do
	eval "file=\${${name}_FILE:-}"
	[ -n "$file" ] || continue
	eval "already=\${${name}+set}"
	if [ -n "$already" ]; then
		echo "audiomill-entrypoint: both $name and ${name}_FILE are set; set one" >&2
		exit 2
	fi
	if [ ! -r "$file" ]; then
		echo "audiomill-entrypoint: ${name}_FILE: cannot read $file" >&2
		exit 2
	fi
	value=$(cat "$file")
	export "$name=$value"
	unset "${name}_FILE"
done

exec "/usr/local/bin/$service" "$@"
