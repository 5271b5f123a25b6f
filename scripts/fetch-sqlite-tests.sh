#!/usr/bin/env bash
# Fetches Debian's `sqlite3` source package (SQLite's full tree, with its TCL test suite) into
# DEST (default target/sqlite-tests) and builds `testfixture` there, without touching the
# system's apt sources: `apt-get source` runs with its own sources (one deb-src entry per
# suite of this machine's Debian release, on the mirrors the system already uses), lists and
# cache directories. The build tools (dpkg-dev, tcl-dev, build-essential) are installed with
# the system's apt-get if missing.
#
# Leaves:  DEST/testfixture   the test shell
#          DEST/test          the suite (a link into DEST/src/sqlite3-<version>/test)
# and prints DEST/testfixture's path on stdout (everything else goes to stderr).
# Cached: if DEST/testfixture exists and runs, nothing is done.
set -euo pipefail
dest=${1:-target/sqlite-tests}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
start=$(date +%s)
log() { echo "fetch-sqlite-tests: $*" >&2; }

# A testfixture works if it opens a database and runs SQL, and the suite is beside it.
works() {
    [ -x "$dest/testfixture" ] && [ -f "$dest/test/tester.tcl" ] || return 1
    local t
    t=$(mktemp)
    echo 'sqlite3 db :memory:; puts [db one {SELECT sqlite_version()}]; db close' > "$t"
    local v
    v=$(cd /tmp && timeout 20 "$dest/testfixture" "$t" 2>/dev/null) || { rm -f "$t"; return 1; }
    rm -f "$t"
    [ -n "$v" ] && log "works: $dest/testfixture (SQLite $v)"
}
if works; then echo "$dest/testfixture"; exit 0; fi

# ---- build tools ----
need=()
dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q 'install ok installed' || need+=(dpkg-dev)
dpkg-query -W -f='${Status}' tcl-dev 2>/dev/null | grep -q 'install ok installed' || need+=(tcl-dev)
dpkg-query -W -f='${Status}' build-essential 2>/dev/null | grep -q 'install ok installed' \
    || need+=(build-essential)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    if [ "$(id -u)" != 0 ]; then
        log "MISSING packages: ${need[*]} (run as root, or: apt-get install ${need[*]})"
        exit 1
    fi
    apt-get -q update >&2 || log "apt-get update failed (trying the install anyway)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
        "${need[@]}" >&2; then
        for p in "${need[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
                || log "MISSING package: $p (apt-get install $p failed)"
        done
        exit 1
    fi
fi
for t in dpkg-source gcc make; do
    command -v "$t" >/dev/null || { log "MISSING tool: $t"; exit 1; }
done
tclconfig=$(ls /usr/lib/tcl8.*/tclConfig.sh /usr/lib/*/tcl8.*/tclConfig.sh 2>/dev/null | head -1) \
    || true
[ -n "$tclconfig" ] || { log "MISSING: tclConfig.sh (package tcl-dev)"; exit 1; }

# ---- private apt with deb-src entries for this release ----
. /etc/os-release
codename=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
[ "${ID:-}" = debian ] || log "warning: not Debian (ID=${ID:-?}); using Debian $codename sources"
# The mirrors the system uses (deb822 URIs: lines and one-line `deb URL` entries).
uris=$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
           | sed -n 's/^URIs:[[:space:]]*//p'
       { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
           | awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }')
main_uri=$(echo "$uris" | tr ' ' '\n' | grep -E '/debian/?$' | head -1 || true)
sec_uri=$(echo "$uris" | tr ' ' '\n' | grep -E '/debian-security/?$' | head -1 || true)
main_uri=${main_uri:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { log "MISSING: $keyring (package debian-archive-keyring)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/sources" "$tmp/lists/partial" "$tmp/cache/archives/partial"
cat > "$tmp/sources/$codename-src.sources" <<SRC
Types: deb-src
URIs: $main_uri
Suites: $codename $codename-updates
Components: main
Signed-By: $keyring
SRC
if [ -n "$sec_uri" ]; then
    cat >> "$tmp/sources/$codename-src.sources" <<SRC

Types: deb-src
URIs: $sec_uri
Suites: $codename-security
Components: main
Signed-By: $keyring
SRC
fi
log "private sources:"; sed 's/^/    /' "$tmp/sources/$codename-src.sources" >&2
opts=(-q -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$tmp/sources"
      -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
      -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update >&2

# The same version as the system's libsqlite3 if the archive still has it, else the newest.
rm -rf "$dest/src"
mkdir -p "$dest/src"
want=$(dpkg-query -W -f='${Version}' libsqlite3-0 2>/dev/null || true)
if ! { [ -n "$want" ] && (cd "$dest/src" && apt-get "${opts[@]}" source "sqlite3=$want" >&2); }
then
    (cd "$dest/src" && apt-get "${opts[@]}" source sqlite3 >&2) \
        || { log "apt-get source sqlite3 failed"; exit 1; }
fi
srcdir=$(find "$dest/src" -mindepth 1 -maxdepth 1 -type d -name 'sqlite3-*' | head -1)
[ -n "$srcdir" ] && [ -f "$srcdir/test/tester.tcl" ] \
    || { log "no test/tester.tcl in the unpacked source under $dest/src"; exit 1; }
log "source: $srcdir ($(( $(date +%s) - start )) s so far)"

# ---- testfixture ----
build="$dest/build"
rm -rf "$build"
mkdir -p "$build"
(cd "$build" && "$srcdir/configure" --with-tcl="$(dirname "$tclconfig")" >configure.log 2>&1) \
    || { tail -30 "$build/configure.log" >&2; log "configure failed ($build/configure.log)"; exit 1; }
(cd "$build" && make -j"$(nproc)" testfixture >make.log 2>&1) \
    || { tail -30 "$build/make.log" >&2; log "make testfixture failed ($build/make.log)"; exit 1; }
install -m 0755 "$build/testfixture" "$dest/testfixture"
ln -sfn "$srcdir/test" "$dest/test"
works || { log "the built testfixture does not run"; exit 1; }
log "done in $(( $(date +%s) - start )) s"
echo "$dest/testfixture"
