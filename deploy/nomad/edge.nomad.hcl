# The edge (docs/architecture.md, "The edge") as a Nomad job: nginx, its
# config rendered by Nomad's template block (consul-template inside Nomad)
# from the same nginx/nginx.conf.ctmpl that `make up` and compose render, read
# when the job is submitted (file()). On every change of the passing
# instances nginx gets SIGHUP: it tests the new config and keeps the old one
# when the test fails, as nginx/reload.sh does. The Nomad agent's Consul token
# must read the services (the stack's read-only token edge).

variable "driver" {
  description = "raw_exec or exec: nginx on the host (var.nginx); docker: the image docker-compose builds"
  type        = string
  default     = "raw_exec"

  validation {
    condition     = contains(["raw_exec", "exec", "docker"], var.driver)
    error_message = "The driver must be raw_exec, exec or docker."
  }
}

variable "nginx" {
  type    = string
  default = "/usr/sbin/nginx"
}

variable "image" {
  type    = string
  default = "audiomill/edge"
}

variable "version" {
  type    = string
  default = "dev"
}

variable "templates" {
  description = "the directory holding nginx.conf.ctmpl (the repository's nginx/), read at submission"
  type        = string
  default     = "../../nginx"
}

variable "count" {
  description = "one per edge host (the port is static)"
  type        = number
  default     = 1
}

variable "port" {
  type    = number
  default = 8080
}

variable "host" {
  description = "EDGE_HOST: the address nginx listens on"
  type        = string
  default     = "0.0.0.0"
}

variable "service_tag" {
  description = "EDGE_SERVICE_TAG: route only to instances with this tag (empty: every passing instance)"
  type        = string
  default     = ""
}

variable "signup_rate" {
  description = "EDGE_SIGNUP_RATE, EDGE_SIGNUP_BURST: sign-ups per client address (the template's defaults are for a public edge)"
  type        = string
  default     = "6r/m"
}

variable "signup_burst" {
  type    = number
  default = 5
}

variable "cpu" {
  description = "MHz"
  type        = number
  default     = 200
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

job "edge" {
  datacenters = var.datacenters
  type        = "service"

  meta {
    version = var.version
  }

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "5s"
    healthy_deadline  = "1m"
    progress_deadline = "3m"
    auto_revert       = true
  }

  group "edge" {
    count = var.count

    # One edge per host, behind a floating address or DNS.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {
        static = var.port
      }
    }

    service {
      provider = "nomad"
      name     = "edge"
      port     = "http"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "nginx" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [] : [1]
        content {
          command = var.nginx
          args    = ["-p", "${NOMAD_TASK_DIR}", "-c", "${NOMAD_TASK_DIR}/nginx.conf", "-g", "daemon off;"]
        }
      }

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = "${var.image}:${var.version}"
          network_mode = "host"
          entrypoint   = ["nginx"]
          args         = ["-p", "/local", "-c", "/local/nginx.conf", "-g", "daemon off;"]
        }
      }

      env {
        EDGE_HOST         = var.host
        EDGE_PORT         = "${NOMAD_PORT_http}"
        EDGE_SERVICE_TAG  = var.service_tag
        EDGE_SIGNUP_RATE  = var.signup_rate
        EDGE_SIGNUP_BURST = var.signup_burst
        EDGE_PID          = "${NOMAD_TASK_DIR}/nginx.pid"
        EDGE_ERROR_LOG    = "stderr"
        EDGE_ACCESS_LOG   = "/dev/stdout"
      }

      template {
        data          = file("${var.templates}/nginx.conf.ctmpl")
        destination   = "local/nginx.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        # The passing instances change at once when many start or stop:
        # render once they settle.
        wait {
          min = "200ms"
          max = "1s"
        }
      }

      kill_signal  = "SIGQUIT" # nginx's graceful stop
      kill_timeout = "30s"

      resources {
        cpu    = var.cpu
        memory = 128
      }
    }
  }
}
