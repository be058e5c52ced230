# Consul agent for the local stack (scripts/deps.sh): started as
#   consul agent -dev -config-file=consul/dev.hcl -config-file=var/data/consul-acl.hcl
# Dev mode is a single in-memory server: its catalog starts empty on every
# start, which suits services that register themselves.

node_name  = "audiomill-dev"
datacenter = "dc1"

# Everything on loopback: the HTTP API and UI on 127.0.0.1:8500.
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"

ports {
  http     = 8500
  dns      = -1 # nothing uses Consul DNS; discovery is over the HTTP API
  grpc     = -1 # no Connect / Envoy
  grpc_tls = -1
}

ui_config {
  enabled = true
}

log_level            = "INFO"
disable_update_check = true
enable_script_checks = false

# Default-deny ACLs (docs/security.md): nothing reads or writes without a
# token. The tokens are not here: scripts/deps.sh adds the file
# var/data/consul-acl.hcl (mode 600) with the management (operator) and
# agent tokens, then consul/acl-bootstrap.sh creates every other token with
# the secret kept in var/data/consul-tokens.env, after every start (the dev
# agent keeps nothing).
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = false
  # While the agent cannot reach its servers (there is none but itself),
  # tokens it has seen keep working.
  down_policy = "extend-cache"
}
