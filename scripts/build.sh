#!/usr/bin/env bash
# Builds every service (or the ones named) into var/bin/<service>:
#   scripts/build.sh [service...]
# The one build command of the project: `make build`, `make up` and the
# container images all build through it. A service whose sources have not changed since its last build is skipped
# (var/bin/<service>.key holds the hash it was built from).
# VERSION (default: git describe --always --dirty, or "dev") is stamped into
# main.version; inside a git checkout Go stamps the commit too (an instance's
# Consul meta.commit).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version() {
	if [[ -n ${VERSION:-} ]]; then
		printf '%s\n' "$VERSION"
	else
		git -C "$R" describe --always --dirty 2>/dev/null || printf 'dev\n'
	fi
}

# source_key VERSION: a hash of everything a service binary is built from (the
# Go version, VERSION, and every module's sources), so an unchanged tree
# builds nothing (*.sql: the migrations embedded in the binaries).
source_key() {
	{
		go version
		printf '%s\n' "$1"
		find "$R" \( -path "$R/var" -o -path "$R/tools" -o -path "$R/.git" -o -name node_modules \) -prune -o \
			-type f \( -name '*.go' -o -name '*.sql' -o -name go.mod -o -name go.sum -o -name go.work -o -name go.work.sum \) -print |
			LC_ALL=C sort | xargs -d '\n' sha256sum
	} | sha256sum | cut -c1-16
}

main() {
	local svc v key vcs services=("$@")
	((${#services[@]})) || services=("${SERVICES[@]}")
	for svc in "${services[@]}"; do
		[[ -v SERVICE_PORT[$svc] ]] || die "unknown service '$svc' (services: ${SERVICES[*]})"
	done
	command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 is needed)"
	v=$(version)
	# The commit goes into the binary (Consul meta.commit): Go stamps it in
	# a workspace only when asked, and cannot outside a git checkout.
	vcs=false
	! git -C "$R" rev-parse --git-dir >/dev/null 2>&1 || vcs=true
	mkdir -p "$BIN_DIR"
	cd "$R"
	key=$(source_key "$v")
	for svc in "${services[@]}"; do
		if [[ -x $BIN_DIR/$svc && $(cat "$BIN_DIR/$svc.key" 2>/dev/null) == "$key" ]]; then
			say "$svc: up to date (${BIN_DIR#"$R"/}/$svc, $v)"
			continue
		fi
		go build -trimpath -buildvcs="$vcs" -ldflags "-X main.version=$v" -o "$BIN_DIR/$svc" "./$svc/cmd/$svc" ||
			die "build of $svc failed (go build ./$svc/cmd/$svc)"
		printf '%s\n' "$key" >"$BIN_DIR/$svc.key"
		say "$svc: built ${BIN_DIR#"$R"/}/$svc ($v)"
	done
}

main "$@"
