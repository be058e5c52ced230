# auth (docs/auth.md) as a Nomad job: users, tokens, service accounts and
# signing keys. Replicas share the database and the key-encryption key
# (AUTH_KEK in the Nomad variable), so each opens the keys another sealed.
#
# The instances register themselves in Consul as under `make up` and compose;
# Nomad's own catalog entry (provider "nomad") carries the /readyz check a
# deployment waits for. Why: gateway.nomad.hcl. Settings and secrets come
# from the Nomad variable nomad/jobs/auth (scripts/cluster.sh writes it).

variable "driver" {
  description = "raw_exec or exec: the binary var.artifacts/auth on the host; docker: the image docker-compose builds"
  type        = string
  default     = "raw_exec"

  validation {
    condition     = contains(["raw_exec", "exec", "docker"], var.driver)
    error_message = "The driver must be raw_exec, exec or docker."
  }
}

variable "artifacts" {
  description = "the directory holding the service binaries on every client (raw_exec, exec)"
  type        = string
  default     = "/opt/audiomill/bin"
}

variable "image" {
  description = "the image (docker), tagged var.version"
  type        = string
  default     = "audiomill/auth"
}

variable "version" {
  description = "the release; a new one rolls the instances over"
  type        = string
  default     = "dev"
}

variable "count" {
  type    = number
  default = 2
}

variable "cpu" {
  description = "MHz"
  type        = number
  default     = 300
}

variable "memory" {
  description = "MiB"
  type        = number
  default     = 256
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "consul_addr" {
  description = "the Consul agent of each client"
  type        = string
  default     = "127.0.0.1:8500"
}

variable "tags" {
  description = "SERVICE_TAGS: the edge of this cluster routes to instances with its EDGE_SERVICE_TAG"
  type        = string
  default     = "nomad"
}

variable "shutdown_delay" {
  description = "SHUTDOWN_DELAY: serving on after leaving Consul, while the edge drops the instance"
  type        = string
  default     = "5s"
}

job "auth" {
  datacenters = var.datacenters
  type        = "service"

  meta {
    version = var.version
  }

  # One instance at a time; each must pass /readyz for 5 s, a deployment
  # that fails goes back to the last good version.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "5s"
    healthy_deadline  = "2m"
    progress_deadline = "5m"
    auto_revert       = true
  }

  group "auth" {
    count = var.count

    network {
      port "http" {}
    }

    service {
      provider = "nomad"
      name     = "auth"
      port     = "http"

      check {
        type     = "http"
        path     = "/readyz"
        interval = "1s"
        timeout  = "1s"
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "1s"
      mode     = "delay"
    }

    task "auth" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [] : [1]
        content {
          command = "${var.artifacts}/auth"
        }
      }

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = "${var.image}:${var.version}"
          network_mode = "host"
        }
      }

      env {
        PORT             = "${NOMAD_PORT_http}"
        ADVERTISE_ADDR   = "${NOMAD_IP_http}"
        SERVICE_ID       = "auth-${NOMAD_ALLOC_ID}"
        SERVICE_TAGS     = var.tags
        SHUTDOWN_DELAY   = var.shutdown_delay
        CONSUL_HTTP_ADDR = var.consul_addr
      }

      template {
        destination = "secrets/service.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/auth" }}{{ range .Tuples }}
          {{ .K }}={{ .V | toJSON }}
          {{- end }}{{ end }}
        EOT
      }

      # SIGTERM: leave Consul, SHUTDOWN_DELAY, then the requests in flight
      # (SHUTDOWN_TIMEOUT, 15 s) finish.
      kill_timeout = "30s"

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
