# The converter (docs/converter.md) as a Nomad job: it takes video.uploaded
# from RabbitMQ and runs ffmpeg. Nothing routes requests to it
# (SHUTDOWN_DELAY 0); on SIGTERM the jobs in hand get CONVERTER_GRACE_PERIOD
# (20 s) to finish, then go back to the queue for another converter.
#
# The instances register themselves in Consul as under `make up` and compose;
# Nomad's own catalog entry (provider "nomad") carries the /readyz check a
# deployment waits for. Why: gateway.nomad.hcl. Settings and secrets come
# from the Nomad variable nomad/jobs/converter (scripts/cluster.sh writes it).

variable "driver" {
  description = "raw_exec or exec: the binary var.artifacts/converter on the host; docker: the image docker-compose builds"
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
  default     = "audiomill/converter"
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
  default     = 1000
}

variable "memory" {
  description = "MiB"
  type        = number
  default     = 512
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
  default     = "0s"
}

job "converter" {
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

  group "converter" {
    count = var.count

    network {
      port "http" {}
    }

    service {
      provider = "nomad"
      name     = "converter"
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

    task "converter" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [] : [1]
        content {
          command = "${var.artifacts}/converter"
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
        SERVICE_ID       = "converter-${NOMAD_ALLOC_ID}"
        SERVICE_TAGS     = var.tags
        SHUTDOWN_DELAY   = var.shutdown_delay
        CONSUL_HTTP_ADDR = var.consul_addr
      }

      template {
        destination = "secrets/service.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/converter" }}{{ range .Tuples }}
          {{ .K }}={{ .V | toJSON }}
          {{- end }}{{ end }}
        EOT
      }

      # SIGTERM: leave Consul, then the conversions in hand get
      # CONVERTER_GRACE_PERIOD (20 s) before they go back to the queue.
      kill_timeout = "45s"

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
