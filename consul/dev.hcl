# Consul agent for the local stack (scripts/deps.sh): started as
#   consul agent -dev -config-file=consul/dev.hcl
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
