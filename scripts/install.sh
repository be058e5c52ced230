#!/usr/bin/env bash
# Installs what is needed and missing:
#   scripts/install.sh        the local stack: Debian packages, and the tools
#                             pinned by tools/ (Consul, consul-template, the
#                             FerretDB launcher) and MailDev (npm); a consul
#                             or consul-template of the pinned version on PATH
#                             is used as it is, not built
#   scripts/install.sh lint   the checkers of `make check`: Debian's shellcheck,
#                             and staticcheck from the module proxy
# Tools are built or installed once into a cache outside the repo, keyed by
# version. Idempotent: a second run installs nothing and builds nothing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_debian_packages() {
	local cmd missing=()
	for cmd in "${!DEBIAN_PACKAGE[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${DEBIAN_PACKAGE[$cmd]}")
	done
	local mod
	for mod in "${!DEBIAN_PYTHON_MODULE[@]}"; do
		/usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || missing+=("${DEBIAN_PYTHON_MODULE[$mod]}")
	done
	# A Chinese font for the browser tests' screenshots of the zh-CN page:
	# WenQuanYi Micro Hei (about 5 MB; fonts-noto-cjk is over 50 MB).
	if ! command -v fc-list >/dev/null 2>&1 || [[ -z $(fc-list :lang=zh 2>/dev/null) ]]; then
		missing+=(fonts-wqy-microhei)
	fi
	if ((${#missing[@]} == 0)); then
		say "debian packages: present ($(printf '%s\n' "${DEBIAN_PACKAGE[@]}" "${DEBIAN_PYTHON_MODULE[@]}" | sort -u | paste -sd' '))"
		return
	fi
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	apt_install "${missing[@]}"
}

# apt_install PACKAGE...: installs these Debian packages.
apt_install() {
	say "debian packages: installing $*"
	local sudo=()
	((EUID == 0)) || sudo=(sudo)
	"${sudo[@]}" apt-get update -q || die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
		die "apt-get install $* failed"
}

# install_pinned NAME [NOTE]: HashiCorp's NAME at the version tools/go.mod
# pins: the one on PATH when it is that version, else built into the cache.
install_pinned() {
	local name=$1 version p
	version=$(pinned_version "$name")
	p=$(tool_on_path "$name" "$version")
	if [[ -n $p ]]; then
		say "$name $version: $p (on PATH)"
		return
	fi
	build_go_tool "$name" "$version" "$R/tools" "${HASHICORP_MODULE[$name]}" "${2:-}"
}

# build_go_tool NAME VERSION MODDIR PACKAGE [NOTE]: go build PACKAGE (from the
# module in MODDIR) into the cache, unless that version is already there.
build_go_tool() {
	local name=$1 version=$2 moddir=$3 pkg=$4 dir
	dir=$(tool_dir "$name" "$version")
	if [[ -x $dir/$name ]]; then
		say "$name $version: cached"
		return
	fi
	say "$name $version: building into $dir${5:+ ($5)}"
	mkdir -p "$dir"
	(cd "$moddir" && go_tools build -o "$dir/$name.partial" "$pkg") || die "$name $version: go build $pkg failed"
	mv -f "$dir/$name.partial" "$dir/$name"
}

# install_nomad: Nomad NOMAD_VERSION (lib.sh) into the cache, unless it is on
# PATH at that version or cached: the module and its api module from the Go
# module proxy, the api put at ./api as the module's go.mod expects, then go
# build (-mod=mod: the module's go.sum lacks the api's own requirements).
install_nomad() {
	local dir tmp src api p
	p=$(tool_on_path nomad "$NOMAD_VERSION")
	if [[ -n $p ]]; then
		say "nomad $NOMAD_VERSION: $p (on PATH)"
		return
	fi
	dir=$(tool_dir nomad "$NOMAD_VERSION")
	if [[ -x $dir/nomad ]]; then
		say "nomad $NOMAD_VERSION: cached"
		return
	fi
	say "nomad $NOMAD_VERSION: building into $dir (a cold build takes about 16 minutes on 2 cores)"
	src=$(module_dir "github.com/hashicorp/nomad@$NOMAD_VERSION") || die "nomad: go mod download failed"
	api=$(module_dir "github.com/hashicorp/nomad/api@$NOMAD_API_VERSION") || die "nomad api: go mod download failed"
	tmp=$(mktemp -d)
	cp -R "$src/." "$tmp/"
	chmod -R u+w "$tmp"
	rm -rf "$tmp/api"
	cp -R "$api" "$tmp/api"
	chmod -R u+w "$tmp/api"
	mkdir -p "$dir"
	(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod go build -trimpath -o "$dir/nomad.partial" .) ||
		{ rm -rf "$tmp"; die "nomad $NOMAD_VERSION: go build failed"; }
	rm -rf "$tmp"
	mv -f "$dir/nomad.partial" "$dir/nomad"
}

# module_dir MODULE@VERSION: downloads the module (Go module proxy) and
# prints its directory in the module cache.
module_dir() {
	local out
	out=$(GOWORK=off GOFLAGS='' go mod download -json "$1") || return 1
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$out"
}

install_maildev() {
	local dir tmp
	dir=$(tool_dir maildev "$MAILDEV_VERSION")
	if [[ -f $(maildev_js) ]]; then
		say "maildev $MAILDEV_VERSION: cached"
		return
	fi
	say "maildev $MAILDEV_VERSION: npm install into $dir"
	tmp="$dir.partial"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error "maildev@$MAILDEV_VERSION" ||
		die "maildev $MAILDEV_VERSION: npm install failed"
	rm -rf "$dir"
	mv "$tmp" "$dir"
}

install_lint_tools() {
	command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
	say "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): present"
	local bin dir
	bin=$(staticcheck_bin)
	dir=$(dirname "$bin")
	if [[ -x $bin ]]; then
		say "staticcheck $STATICCHECK_VERSION: cached"
		return
	fi
	say "staticcheck $STATICCHECK_VERSION: go install into $dir"
	rm -rf "$dir.partial"
	mkdir -p "$dir.partial"
	GOWORK=off GOFLAGS='' GOBIN="$dir.partial" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ||
		die "staticcheck $STATICCHECK_VERSION: go install failed"
	rm -rf "$dir"
	mv "$dir.partial" "$dir"
}

main() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 is needed)"
	case ${1:-} in
	"") ;;
	lint)
		install_lint_tools
		return
		;;
	nomad)
		install_nomad
		return
		;;
	*) die "usage: scripts/install.sh [lint|nomad]" ;;
	esac
	install_debian_packages
	install_pinned consul "a cold build takes about 7 minutes on 2 cores"
	install_pinned consul-template
	build_go_tool ferretdb "$(ferretdb_key)" "$R/tools/ferretdb" .
	install_maildev
}

main "$@"
