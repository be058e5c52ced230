#!/usr/bin/env bash
# The code checks (`make check`; `make test` and CI run it before the tests):
#   gofmt -l      every Go file is formatted
#   go vet        every package of every module: go.work's, and the modules
#                 it leaves out (tools/ferretdb), each on its own
#   staticcheck   the same packages (STATICCHECK_VERSION, scripts/lib.sh)
#   ShellCheck    every shell script: *.sh, and files with a sh/bash #! line
# Every check runs and prints its findings; it fails when any finds one.
# ShellCheck and staticcheck are installed when missing (scripts/install.sh lint).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Every package of every module in go.work (the root is a workspace, not a
# module: ./... does not work here).
GO_PACKAGES="github.com/audiomill/audiomill/..."

# files: every file of the checkout but the runtime state and VCS data.
files() {
	find "$R" \( -path "$R/var" -o -path "$R/.git" -o -name node_modules \) -prune -o -type f -print | LC_ALL=C sort
}

go_files() { files | grep '\.go$' || true; }

# shell_scripts: every shell script, relative to the checkout.
shell_scripts() {
	local f
	files | while IFS= read -r f; do
		if [[ $f == *.sh ]] || head -n 1 "$f" 2>/dev/null | grep -Eq '^#! *(/usr)?/bin/(env +)?(ba|da)?sh\b'; then
			printf '%s\n' "${f#"$R"/}"
		fi
	done
}

# outside_modules: the directories of the modules holding Go code that
# go.work leaves out; they build on their own (GOWORK=off).
outside_modules() {
	local f m
	go_files | while IFS= read -r f; do
		m=$(dirname "$f")
		until [[ -e $m/go.mod || $m == "$R" || $m == / ]]; do m=$(dirname "$m"); done
		[[ ! -e $m/go.mod ]] || printf '%s\n' "$m"
	done | sort -u | grep -vxF -f <(go list -m -f '{{.Dir}}') || true
}

main() {
	cd "$R"
	"$R/scripts/install.sh" lint
	local failed=() out m sc scripts modules
	sc=$(staticcheck_bin)

	say "--- gofmt -l"
	out=$(go_files | xargs -r -d '\n' gofmt -l)
	if [[ -n $out ]]; then
		printf '%s\n' "${out//"$R"\//}"
		failed+=("gofmt (run gofmt -w on the files above)")
	fi

	mapfile -t modules < <(outside_modules)
	say "--- go vet: $GO_PACKAGES${modules[*]:+ and }${modules[*]#"$R"/}"
	# -tags cluster: the cluster tests (make cluster-test) are checked too.
	go vet -tags cluster "$GO_PACKAGES" || failed+=("go vet")
	for m in "${modules[@]}"; do
		(cd "$m" && go_tools vet ./...) || failed+=("go vet ${m#"$R"/}")
	done

	say "--- staticcheck $STATICCHECK_VERSION"
	"$sc" -tags cluster "$GO_PACKAGES" || failed+=(staticcheck)
	for m in "${modules[@]}"; do
		(cd "$m" && GOWORK=off GOFLAGS=-mod=readonly "$sc" ./...) || failed+=("staticcheck ${m#"$R"/}")
	done

	mapfile -t scripts < <(shell_scripts)
	say "--- shellcheck: ${#scripts[@]} scripts"
	shellcheck -x "${scripts[@]}" || failed+=(shellcheck)

	if ((${#failed[@]} > 0)); then
		out=$(printf '%s; ' "${failed[@]}")
		die "check failed: ${out%; }"
	fi
	say "check: clean (gofmt, go vet, staticcheck, shellcheck)"
}

main "$@"
