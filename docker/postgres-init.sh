#!/bin/sh
# Run once by the official postgres image when its volume is new
# (docker-entrypoint-initdb.d): each service that keeps records gets its own
# role and database of the same name, owning nothing else, with the
# password from its compose secret. The services migrate their own schema.
set -eu

for svc in auth gateway; do
	role="audiomill_$svc"
	pw=$(cat "/run/secrets/${svc}_db_password")
	# The SQL, password included, goes through stdin, never argv.
	psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres <<SQL
create role $role login nosuperuser nocreatedb nocreaterole password '$pw';
create database $role owner $role;
revoke all on database $role from public;
grant connect, temporary on database $role to $role;
SQL
	echo "postgres-init: database and role $role created"
done
