# consul-template for the edge: renders nginx/nginx.conf.ctmpl from Consul and
# hands the result to nginx/reload.sh, which runs `nginx -t` before anything
# goes live and reloads nginx only with a config that passed.
# Paths are relative to the working directory: scripts/up.sh runs from the
# repository root. Command-line flags (-consul-addr, -template) override this file.

consul {
  address = "127.0.0.1:8500"

  retry {
    enabled     = true
    attempts    = 0 # keep retrying while Consul restarts
    backoff     = "250ms"
    max_backoff = "5s"
  }
}

log_level = "info"

# Stop cleanly on SIGTERM (the default is SIGINT; SIGTERM would only be passed on).
kill_signal = "SIGTERM"

# Quiescence: render once Consul's answer has been stable for 1 s, and at the
# latest 4 s after the first change: a flapping check or a rolling restart is
# one reload, and a dead instance is out of the upstream within about 5 s.
# Services keep serving for SHUTDOWN_DELAY (5 s) after deregistering, longer
# than this, so the edge never sends to a closed listener.
wait {
  min = "1s"
  max = "4s"
}

template {
  source          = "nginx/nginx.conf.ctmpl"
  destination     = "var/nginx/nginx.conf.rendered"
  perms           = 0644
  command         = ["/bin/sh", "nginx/reload.sh"]
  command_timeout = "30s"
}
