#!/bin/sh
# Installs the build dependencies that debian/control lists and this
# machine lacks, so that a fresh Debian machine can run `make check`.
#
# Usage: tools/deps.sh [-n | --list] [PACKAGE...]
#   PACKAGE...  also make sure these are installed (e.g. lintian)
#   --list      print every package the build needs, one a line, and exit
#   -n          print the packages that are missing, one a line, and exit
#
# build-essential is added as Debian policy implies it for every build.
# Version constraints, architecture qualifiers (:any, :native) and
# <profile> restrictions are ignored: whatever any build or test run may
# need is installed. A package whose [arch] list excludes this machine's
# architecture is left out. Of alternatives (a | b), the first is taken.
set -eu

me=deps.sh
control=$(dirname "$0")/../debian/control
mode=install

case "${1-}" in
--list) mode=list; shift ;;
-n) mode=dry; shift ;;
-*) echo "$me: unknown option $1" >&2; exit 2 ;;
esac

if [ ! -r "$control" ]; then
	echo "$me: cannot read $control" >&2
	exit 1
fi

# Build-Depends* of the source paragraph (the first), continuation lines
# joined, comments dropped; then one package name per line, keeping only
# those whose [arch] list admits this machine's architecture.
build_deps()
{
	awk -v arch="$(dpkg --print-architecture)" '
	function admits(list,    n, i, a, neg, pos, hit) {
		n = split(list, a, " ")
		for (i = 1; i <= n; i++) {
			if (sub(/^!/, "", a[i])) {
				neg = 1
				if (a[i] == arch)
					return 0
			} else {
				pos = 1
				if (a[i] == arch || a[i] == "any" || a[i] == "linux-any")
					hit = 1
			}
		}
		return hit || (neg && !pos)
	}
	/^#/ { next }
	/^[ \t]*$/ { exit }
	/^[^ \t]/ {
		infield = tolower($0) ~ /^build-depends(-indep|-arch)?:/
		if (!infield)
			next
		sub(/^[^:]*:/, "")
	}
	infield { deps = deps "," $0 }
	END {
		n = split(deps, dep, ",")
		for (i = 1; i <= n; i++) {
			d = dep[i]
			sub(/\|.*/, "", d)
			if (match(d, /\[[^]]*\]/)) {
				if (!admits(substr(d, RSTART + 1, RLENGTH - 2)))
					continue
			}
			gsub(/\[[^]]*\]|<[^>]*>|\([^)]*\)|:[a-z0-9-]+|[ \t]/, "", d)
			if (d != "")
				print d
		}
	}
	' "$control"
}

wanted=$( { build_deps; echo build-essential; for p in "$@"; do echo "$p"; done; } |
	  awk '!seen[$0]++')

if [ "$mode" = list ]; then
	printf '%s\n' "$wanted"
	exit 0
fi

# Names this machine has: installed packages and what they provide
# (debhelper provides debhelper-compat, for one).
have=$(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' |
       awk -F'|' 'substr($1, 2, 1) == "i" {
		print $2
		n = split($3, prov, ",")
		for (i = 1; i <= n; i++) {
			p = prov[i]
			sub(/\(.*/, "", p)
			gsub(/[ \t]/, "", p)
			if (p != "")
				print p
		}
	       }')

missing=$(printf '%s\n' "$wanted" | grep -vxF -e "$have" || true)

if [ "$mode" = dry ]; then
	[ -z "$missing" ] || printf '%s\n' "$missing"
	exit 0
fi

[ -z "$missing" ] && exit 0

# shellcheck disable=SC2086 # one word per package, on purpose
set -- $missing
if [ "$(id -u)" -ne 0 ]; then
	echo "$me: missing build dependencies: $*" >&2
	echo "$me: run as root: apt-get install --no-install-recommends $*" >&2
	exit 1
fi

echo "$me: installing $*"
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get -q install -y --no-install-recommends "$@"
