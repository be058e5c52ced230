#!/usr/bin/env bash
# Builds every service (or the ones named) into var/bin/<service>:
#   scripts/build.sh [service...]
# The one build command of the project: `make build`, `make up` and the
# container images all build through it. Go's build cache makes a rebuild of
# unchanged code fast, so nothing is skipped here.
# VERSION (default: git describe --always --dirty, or "dev") is stamped into
# main.version.
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

main() {
	local svc v services=("$@")
	((${#services[@]})) || services=("${SERVICES[@]}")
	for svc in "${services[@]}"; do
		[[ -v SERVICE_PORT[$svc] ]] || die "unknown service '$svc' (services: ${SERVICES[*]})"
	done
	command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 is needed)"
	v=$(version)
	mkdir -p "$BIN_DIR"
	cd "$R"
	for svc in "${services[@]}"; do
		go build -trimpath -ldflags "-X main.version=$v" -o "$BIN_DIR/$svc" "./$svc/cmd/$svc" ||
			die "build of $svc failed (go build ./$svc/cmd/$svc)"
		say "$svc: built var/bin/$svc ($v)"
	done
}

main "$@"
