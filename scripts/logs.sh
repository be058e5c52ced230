#!/usr/bin/env bash
# Follows the logs of every process of the stack (`make logs`), each line
# prefixed with its process name:
#   scripts/logs.sh [lines]   (lines of history per file, default 20)
# Logs started after this command (a new replica) need a restart of it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
	local lines=${1:-20} files
	shopt -s nullglob
	files=("$LOG_DIR"/*.log)
	((${#files[@]})) || die "no logs in ${LOG_DIR#"$R"/} yet; start the stack with make up"
	# tail -v prints a "==> file <==" header before each file's lines; awk turns
	# it into the prefix of the lines that follow.
	tail -v -n "$lines" -F "${files[@]}" | awk '
		/^==> .* <==$/ {
			name = $0
			sub(/^==> /, "", name); sub(/ <==$/, "", name)
			sub(/^.*\//, "", name); sub(/\.log$/, "", name)
			next
		}
		/^$/ { next }
		{ printf "%-16s| %s\n", name, $0; fflush() }
	'
}

main "$@"
