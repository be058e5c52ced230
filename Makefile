# Thin wrappers around scripts/ (the scripts hold the logic; see README.md).
SHELL := /bin/bash

# Every package of every module in go.work. (`./...` does not work here: the
# repository root is a workspace, not a module.)
PKGS := github.com/audiomill/audiomill/...

.PHONY: install deps build up down logs check test bench cluster-up cluster-down cluster-test

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
# running). Nomad is built once (its job files are validated by the tests).
# The FerretDB launcher is a module of its own, outside go.work.
test: check up
	scripts/install.sh nomad
	go test -race -count=1 $(PKGS)
	cd tools/ferretdb && GOWORK=off GOFLAGS=-mod=readonly go test -race -count=1 ./...

# Benchmarks print their figures; the 50-user load test in e2e/ needs the stack.
# -p 1: one package's benchmarks at a time, so none measures beside another's
# load on this machine's cores.
bench: up
	go test -p 1 -run '^$$' -bench . -benchmem $(PKGS)

# The platform as Nomad jobs beside the stack (docs/operations/cluster.md):
# the stack, Nomad (built once, about 16 minutes cold), a dev agent, every
# job of deploy/nomad; the cluster's edge is http://127.0.0.1:8090/.
cluster-up:
	scripts/cluster.sh start

# Stops the cluster's jobs and its agent (`make down` stops the stack).
cluster-down:
	scripts/cluster.sh stop

# The failover, scaling and rolling-update tests against the cluster
# (not in `make test`: they take the cluster up and down).
cluster-test: cluster-up
	AUDIOMILL_STACK_TAG=nomad go test -tags cluster -count=1 -p 1 -run '^TestCluster' -v github.com/audiomill/audiomill/e2e
