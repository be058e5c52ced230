# Thin wrappers around scripts/ (the scripts hold the logic; see README.md).
SHELL := /bin/bash

# Every package of every module in go.work. (`./...` does not work here: the
# repository root is a workspace, not a module.)
PKGS := github.com/audiomill/audiomill/...

.PHONY: install deps build up down logs check test bench

# Install what the stack needs and is missing (Debian packages, cached tools).
install:
	scripts/install.sh

# Start the dependencies only: Consul, FerretDB, Redis, RabbitMQ, MailDev.
deps: install
	scripts/deps.sh start

# Build every service into var/bin.
build:
	scripts/build.sh

# Start the whole stack in the background; returns once it is ready.
up:
	scripts/up.sh

# Stop everything the stack started.
down:
	scripts/down.sh

# Follow the logs of every process.
logs:
	scripts/logs.sh

# The code checks: gofmt, go vet, staticcheck and shellcheck of everything
# (installs shellcheck and staticcheck when missing).
check:
	scripts/check.sh

# The checks, then every module of go.work, against the real dependencies and,
# for the user path in e2e/, the whole stack that `make up` starts (and leaves
# running).
test: check up
	go test -race -count=1 $(PKGS)

# Benchmarks print their figures; the 50-user load test in e2e/ needs the stack.
# -p 1: one package's benchmarks at a time, so none measures beside another's
# load on this machine's cores.
bench: up
	go test -p 1 -run '^$$' -bench . -benchmem $(PKGS)
