#!/usr/bin/env bash
# Runs SQLite's own TCL test files twice in one run: with the working directory (where
# test.db and every helper file goes) (a) a bare temporary directory and (b) the mount of a
# real litefleet primary with a replica following it over QUIC, and prints a comparison
# table. After each file, every database the primary holds must be on the replica at the
# same position (TXID and page checksums) and, when the primary's file is the whole
# database, byte-identical up to the database's end; otherwise the file's mount result is
# "replica differs".
#
#   scripts/sqlite-testsuite.sh [options] [TEST.test ...]
#
#   TEST...          test files (names relative to the suite's test/ directory, e.g.
#                    wal.test, ../ext/rtree/rtree1.test); default: the list file
#   --list FILE      the list of test files (default scripts/sqlite-tests.txt; `#` comments)
#   --timeout S      per-file timeout in seconds (default $TIMEOUT or 120)
#   --out DIR        logs and results (default $OUT or target/sqlite-testsuite; replaced)
#   --sequential     run the bare pass, then the mount pass (default: both at once, one
#                    test file at a time on each side)
#   --all            print every row of the table (default: only rows where a side fails;
#                    the whole table is always in OUT/table.txt)
#
# Environment: LITEFLEET_BIN (default target/release/litefleet, else target/debug/litefleet),
# SQLITE_TESTS (default target/sqlite-tests: made by scripts/fetch-sqlite-tests.sh, which is
# run if its testfixture is missing), TIMEOUT, OUT, TMPDIR, REPLICA_LOG (the replica's
# LITEFLEET_LOG, default info). Needs python3 (the replica comparison).
#
# Each file runs as `testfixture <abs path of file> --testdir=<work dir>` with the work dir
# as cwd. (tester.tcl's --testdir=DIR makes DIR and cd's into it before the test: it is where
# test.db goes, default ./testdir; the scripts are found from the test file's own path.)
# Bare, every file gets a fresh directory. On the mount every file runs in the mount's root
# (the mount has no subdirectories); everything a file leaves there is removed before the
# next one (what cannot be removed is noted in OUT/logs/mount/<file>.log). The node is
# restarted (on a fresh data.dir) if it died or its mount stopped answering.
#
# Outputs in OUT: table.txt, results.tsv (file, bare errors, bare tests, bare status, bare
# seconds, mount errors, mount tests, mount status, mount seconds), logs/{bare,mount}/*.log
# (testfixture output), node-N.log (litefleet), failures.txt (first failure per file).
#
# Exit: 0 if every file that passes bare (its summary line says 0 errors) passes on the mount,
# 1 otherwise (the differing files are listed), 2 if the harness itself could not run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
list="$here/sqlite-tests.txt"
timeout_s=${TIMEOUT:-120}
out=${OUT:-$root/target/sqlite-testsuite}
parallel=1
show_all=0
tests=()
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --sequential) parallel=0; shift ;;
        --all) show_all=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) tests+=("$1"); shift ;;
    esac
done
say() { echo "sqlite-testsuite: $*" >&2; }
die() { say "$*"; exit 2; }

# ---- inputs ----
if [ -n "${LITEFLEET_BIN:-}" ]; then bin=$LITEFLEET_BIN
elif [ -x "$root/target/release/litefleet" ]; then bin=$root/target/release/litefleet
else bin=$root/target/debug/litefleet; fi
[ -x "$bin" ] || die "no litefleet binary at $bin (cargo build --release, or set LITEFLEET_BIN)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
suite=${SQLITE_TESTS:-$root/target/sqlite-tests}
if [ ! -x "$suite/testfixture" ] || [ ! -f "$suite/test/tester.tcl" ]; then
    say "no testfixture in $suite: running scripts/fetch-sqlite-tests.sh"
    "$here/fetch-sqlite-tests.sh" "$suite" >/dev/null || die "fetch-sqlite-tests.sh failed"
fi
suite=$(cd "$suite" && pwd)
fixture=$suite/testfixture
testdir=$(cd "$suite/test" && pwd -P)
if [ ${#tests[@]} -eq 0 ]; then
    [ -f "$list" ] || die "no list file $list"
    while IFS= read -r l; do
        l=${l%%#*}; l=$(echo "$l" | tr -d '[:space:]')
        [ -n "$l" ] && tests+=("$l")
    done < "$list"
fi
[ ${#tests[@]} -gt 0 ] || die "no test files"
for t in "${tests[@]}"; do
    [ -f "$testdir/$t" ] || die "no test file $testdir/$t"
done

rm -rf "$out"
mkdir -p "$out/logs/bare" "$out/logs/mount" || die "cannot make $out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlite-testsuite.XXXXXX") || die "mktemp failed"
mnt=$tmp/mnt
rmnt=$tmp/rmnt
mkdir -p "$tmp/bare" "$mnt" "$rmnt"
say "${#tests[@]} test files, timeout ${timeout_s}s each; litefleet $bin; logs in $out"

# A log's name for a test file (../ext/rtree/rtree1.test -> ext-rtree-rtree1).
logname() { local n=${1#../}; n=${n%.test}; echo "${n//\//-}"; }

# The result of one run: "errors<TAB>tests<TAB>status" from its log and exit code.
# status: ok, fail, timeout, wedged, crash(SIGx), abort(rc N).
# skip: the file exits at once with no summary and status 0 (its feature is not built in,
# or another OS's test).
result() {
    local log=$1 rc=$2 extra=$3 e=- n=- st
    read -r e n < <(awk '/^[0-9]+ errors out of [0-9]+ tests/ { e = $1; n = $5 }
                         END { if (e != "") print e, n; else print "- -" }' "$log")
    if [ -n "$extra" ]; then st=$extra
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then st=timeout
    elif [ "$e" != - ]; then
        if [ "$e" = 0 ]; then st=ok; else st=fail; fi
    elif [ "$rc" -gt 128 ]; then st="crash($(kill -l $((rc - 128)) 2>/dev/null || echo $rc))"
    elif [ "$rc" = 0 ]; then st=skip
    else st="abort(rc $rc)"; fi
    printf '%s\t%s\t%s' "$e" "$n" "$st"
}

# ---- the litefleet node (mount pass only) ----
node_pid=
node_n=0
port_free() { ! (ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ":$1\$"); }
start_node() {
    node_n=$((node_n + 1))
    local data=$tmp/data-$node_n port cfg=$tmp/node-$node_n.yml i
    port=$(( 30000 + RANDOM % 20000 ))
    for i in 1 2 3 4 5 6 7 8 9 10; do port_free "$port" && break; port=$(( 30000 + RANDOM % 20000 )); done
    if [ ! -f "$tmp/certs/ca.pem" ]; then
        "$bin" certs dev --out "$tmp/certs" --nodes n1,n2 >/dev/null 2>&1 \
            || { say "litefleet certs dev failed"; return 1; }
    fi
    primary_data=$data
    cat > "$cfg" <<CFG
fuse:
  dir: "$mnt"
data:
  dir: "$data"
http:
  addr: "127.0.0.1:$port"
lease:
  type: static
  candidate: true
  hostname: n1
  advertise-url: "http://127.0.0.1:$port"
tls:
  ca: "$tmp/certs/ca.pem"
  cert: "$tmp/certs/n1.pem"
  key: "$tmp/certs/n1-key.pem"
CFG
    "$bin" mount --config "$cfg" > "$out/node-$node_n.log" 2>&1 &
    node_pid=$!
    echo "$node_pid" > "$tmp/node.pid"
    # The replica: follows the primary; every database must end at the primary's position
    # with the same bytes (checked after each test file, see check_replica).
    replica_data=$tmp/rdata-$node_n
    local rport; rport=$(( 30000 + RANDOM % 20000 ))
    for i in 1 2 3 4 5 6 7 8 9 10; do port_free "$rport" && [ "$rport" != "$port" ] && break; rport=$(( 30000 + RANDOM % 20000 )); done
    cat > "$tmp/replica-$node_n.yml" <<CFG
fuse:
  dir: "$rmnt"
data:
  dir: "$replica_data"
http:
  addr: "127.0.0.1:$rport"
lease:
  type: static
  candidate: false
  hostname: n2
  advertise-url: "http://127.0.0.1:$port"
tls:
  ca: "$tmp/certs/ca.pem"
  cert: "$tmp/certs/n2.pem"
  key: "$tmp/certs/n2-key.pem"
CFG
    LITEFLEET_LOG=${REPLICA_LOG:-info} "$bin" mount --config "$tmp/replica-$node_n.yml" > "$out/replica-$node_n.log" 2>&1 &
    replica_pid=$!
    for i in $(seq 1 300); do
        if ! kill -0 "$node_pid" 2>/dev/null; then
            say "litefleet exited during startup:"; tail -20 "$out/node-$node_n.log" >&2
            node_pid=; return 1
        fi
        if is_mounted && timeout 2 cat "$mnt/.lag" >/dev/null 2>&1 \
            && timeout 2 cat "$rmnt/.lag" >/dev/null 2>&1; then
            say "node $node_n up (pid $node_pid, mount $mnt)"; return 0
        fi
        sleep 0.1
    done
    say "node $node_n: $mnt/.lag not readable after 30 s"; return 1
}
# The mount's device (major:minor) from /proc/self/mountinfo: never touches the mount, so
# it works on a wedged one.
fuse_dev() { awk -v m="$mnt" '$5 == m { d = $3 } END { if (d != "") print d }' /proc/self/mountinfo; }
is_mounted() { [ -n "$(fuse_dev)" ]; }
# Aborts the FUSE connection of the mount: every request in flight fails, nothing waits.
abort_fuse() {
    local dev
    dev=$(fuse_dev); [ -n "$dev" ] || return 0
    [ -w "/sys/fs/fuse/connections/${dev#*:}/abort" ] \
        && echo 1 > "/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null
    return 0
}
# After a test file on the mount: every database the primary holds is, on the replica, at
# the primary's position (TXID and checksum of every page), and, when the primary's file is
# the whole database (no WAL frames, no journal), byte-identical. Prints what differs.
check_replica() {
    local d name want got bad=() i
    for d in "$primary_data"/dbs/*/; do
        name=$(basename "$d")
        [ -f "$d/database" ] || continue
        want=$(timeout 5 cat "$mnt/$name-pos" 2>/dev/null) || continue
        got=
        for i in $(seq 1 300); do
            got=$(timeout 5 cat "$rmnt/$name-pos" 2>/dev/null)
            [ "$got" = "$want" ] && break
            sleep 0.1
        done
        if [ "$got" != "$want" ]; then bad+=("$name@${got:-none}!=$want"); continue; fi
        # As SQLite reads the file: the replica holds the database's pages exactly (its
        # length is the database's); bytes a primary's file has past the database's end (a
        # copy of a longer file, a crash test's leftovers) are no part of it, and a short
        # last page reads as zeros.
        if [ ! -s "$d/wal" ] && [ ! -e "$d/journal" ] && [ -f "$replica_data/dbs/$name/database" ] \
            && ! python3 -c 'import sys
p = open(sys.argv[1], "rb").read(); r = open(sys.argv[2], "rb").read()
sys.exit(p[:len(r)].ljust(len(r), b"\0") != r)' "$d/database" "$replica_data/dbs/$name/database"
        then
            bad+=("$name:bytes($(stat -c %s "$d/database")/$(stat -c %s "$replica_data/dbs/$name/database"))")
        fi
    done
    [ ${#bad[@]} -eq 0 ] || echo "${bad[*]}"
}
stop_replica() {
    if [ -n "${replica_pid:-}" ] && kill -0 "$replica_pid" 2>/dev/null; then
        kill -TERM "$replica_pid" 2>/dev/null
        for i in $(seq 1 100); do kill -0 "$replica_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$replica_pid" 2>/dev/null
        wait "$replica_pid" 2>/dev/null
    fi
    replica_pid=
    if awk -v m="$rmnt" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        fusermount3 -u -z "$rmnt" 2>/dev/null || umount -l "$rmnt" 2>/dev/null
    fi
}
stop_node() {
    stop_replica
    local pid=${node_pid:-$(cat "$tmp/node.pid" 2>/dev/null)} i
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "node pid $pid still running 20 s after SIGTERM: SIGKILL"
            abort_fuse; kill -KILL "$pid" 2>/dev/null; sleep 0.5
        fi
        wait "$pid" 2>/dev/null
    fi
    if is_mounted; then
        abort_fuse
        fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
    fi
    node_pid=; rm -f "$tmp/node.pid"
}
# Before each file on the mount, in one process bounded by a timeout (a wedged mount makes
# it fail): reads .lag (the mount answers), removes what the last file left in the mount's
# root (not .lag, .primary, .promote) and prints what could not be removed.
# Exit: 0 ok, else the mount is not healthy.
prepare_mount() {
    [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null || return 1
    timeout -k 5 30 bash -c '
        cd "$1" && read -r _ < .lag || exit 1
        shopt -s dotglob nullglob
        del=(); for f in *; do case $f in .lag|.primary|.promote) ;; *) del+=("$f") ;; esac; done
        [ ${#del[@]} -eq 0 ] || rm -rf -- "${del[@]}" 2>/dev/null
        for f in *; do case $f in .lag|.primary|.promote) ;; *) printf "%s " "$f" ;; esac; done
        exit 0' prepare "$mnt"
}

# ---- one pass ----
# run_pass bare|mount: one line per file in OUT/<side>.tsv: name, errors, tests, status, secs.
run_pass() {
    local side=$1
    local res=$out/$side.tsv t n log wd rc extra s e left wdog tpid=
    : > "$res"
    # `timeout` runs each test in a process group of its own: stop it explicitly.
    trap '[ -n "${tpid:-}" ] && kill -TERM "$tpid" 2>/dev/null; [ "${side:-}" = mount ] && stop_node; exit 130' TERM INT
    if [ "$side" = mount ]; then
        start_node || { echo "node failed to start" > "$out/mount.failed"; return 1; }
    fi
    for t in "${tests[@]}"; do
        n=$(logname "$t"); log=$out/logs/$side/$n.log; extra=
        if [ "$side" = bare ]; then
            wd=$tmp/bare/$n; mkdir -p "$wd"
        else
            wd=$mnt
            if ! left=$(prepare_mount); then
                say "node dead or mount not answering before $t: restarting the node"
                stop_node
                start_node || { echo "node failed to restart before $t" > "$out/mount.failed"; return 1; }
                left=$(prepare_mount) \
                    || { echo "new node's mount not answering before $t" > "$out/mount.failed"; return 1; }
            fi
            [ -n "$left" ] && echo "(harness: left in the mount before this file: $left)" > "$log"
        fi
        s=${EPOCHREALTIME/[.,]/}
        ( cd "$wd" && exec timeout -k 10 "$timeout_s" "$fixture" "$testdir/$t" --testdir="$wd" ) \
            >> "$log" 2>&1 < /dev/null &
        tpid=$!
        wdog=
        if [ "$side" = mount ]; then
            # A process stuck in a FUSE request may not even die of SIGKILL: past the
            # timeout, abort the mount's connection and kill the node.
            ( sp=; trap '[ -n "$sp" ] && kill "$sp" 2>/dev/null; exit 0' TERM
              sleep $((timeout_s + 20)) & sp=$!; wait "$sp"; sp=
              kill -0 "$tpid" 2>/dev/null || exit 0
              echo "(harness: still running $((timeout_s + 20)) s after start: aborting the FUSE connection)" >> "$log"
              abort_fuse; kill -KILL "$(cat "$tmp/node.pid" 2>/dev/null)" 2>/dev/null
              touch "$tmp/wedged" ) &
            wdog=$!
        fi
        wait "$tpid" 2>/dev/null; rc=$?; tpid=
        e=${EPOCHREALTIME/[.,]/}
        if [ -n "$wdog" ]; then
            kill "$wdog" 2>/dev/null; wait "$wdog" 2>/dev/null
            if [ -e "$tmp/wedged" ]; then extra=wedged; rm -f "$tmp/wedged"; fi
            if ! kill -0 "$node_pid" 2>/dev/null; then
                [ -z "$extra" ] && extra="node died"
                echo "(harness: the litefleet node exited during this file)" >> "$log"
            elif [ -z "$extra" ]; then
                local differ
                differ=$(check_replica)
                if [ -n "$differ" ]; then
                    extra="replica differs"
                    echo "(harness: the replica differs from the primary: $differ)" >> "$log"
                fi
            fi
        fi
        printf '%s\t%s\t%s\n' "$t" "$(result "$log" "$rc" "$extra")" \
            "$(( (e - s) / 1000000 )).$(( (e - s) / 100000 % 10 ))" >> "$res"
        [ "$side" = bare ] && rm -rf "$wd"
    done
    [ "$side" = mount ] && stop_node
    return 0
}

cleanup() {
    local j
    for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null; done
    wait 2>/dev/null
    stop_node
    if is_mounted; then
        say "$mnt is still mounted: leaving $tmp in place"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM

start=$(date +%s)
if [ "$parallel" = 1 ]; then
    run_pass bare & bare_job=$!
    run_pass mount & mount_job=$!
    wait "$bare_job"; wait "$mount_job"
else
    run_pass bare
    run_pass mount
fi
elapsed=$(( $(date +%s) - start ))
[ -e "$out/mount.failed" ] && die "mount pass: $(cat "$out/mount.failed") (see $out/node-*.log)"

# ---- the table ----
# First failing step of a log: the test that failed and its "! expected/got" lines, its
# "Error:" line, or the fatal Tcl error that ended the file.
first_failure() {
    awk '/^! / || /^Error: / || /testfixture: / || /\*\*\*\* / {
             o = (prev ~ /\.\.\.$/ ? prev " " : "") $0
             if ($0 ~ /expected:/ && (getline nx) > 0) o = o " | " nx
             print substr(o, 1, 300); exit }
         { prev = $0 }' "$1" 2>/dev/null
}
: > "$out/failures.txt"
paste "$out/bare.tsv" "$out/mount.tsv" | awk -F'\t' -v OFS='\t' \
    '{ if ($1 != $6) { print "mismatched result files" > "/dev/stderr"; exit 1 }
       print $1, $2, $3, $4, $5, $7, $8, $9, $10 }' > "$out/results.tsv" \
    || die "bare and mount results do not line up"
differ=(); both_ok=0; bare_bad=0; mount_only_ok=0; skipped=0
header=$(printf '%-38s %8s %8s %8s %8s  %s' "test file" "err bare" "tests" "err mnt" "tests" "notes")
echo "$header" > "$out/table.txt"
echo "$header" > "$out/summary.txt"
while IFS=$'\t' read -r f be bn bs bt me mn ms mt; do
    note=
    [ "$bs" = ok ] || [ "$bs" = fail ] || note="bare: $bs"
    if [ "$ms" != ok ] && [ "$ms" != fail ]; then note="${note:+$note; }mount: $ms"; fi
    if [ "$bs" = ok ] && [ "$ms" = ok ]; then both_ok=$((both_ok + 1)); row=same
    elif [ "$bs" = skip ] && [ "$ms" = skip ]; then skipped=$((skipped + 1)); row=same
    elif [ "$bs" = ok ]; then differ+=("$f"); row=differ; note="${note:+$note; }FAILS ON MOUNT"
    else
        bare_bad=$((bare_bad + 1)); row=barefail
        [ "$ms" = ok ] && mount_only_ok=$((mount_only_ok + 1))
    fi
    line=$(printf '%-38s %8s %8s %8s %8s  %s' "$f" "$be" "$bn" "$me" "$mn" "$note")
    echo "$line" >> "$out/table.txt"
    if [ "$show_all" = 1 ] || [ "$row" != same ]; then echo "$line" >> "$out/summary.txt"; fi
    if [ "$ms" != ok ] && [ "$ms" != skip ]; then
        printf '%s [mount %s]: %s\n' "$f" "$ms" \
            "$(first_failure "$out/logs/mount/$(logname "$f").log")" >> "$out/failures.txt"
    fi
done < "$out/results.tsv"
{
    echo
    echo "${#tests[@]} files: $both_ok pass on both, ${#differ[@]} pass bare but not on the mount," \
         "$bare_bad do not pass bare ($mount_only_ok of them pass on the mount)," \
         "$skipped skip themselves on both (no summary, status 0)."
    echo "bare: $(awk -F'\t' '{s+=$5} END {printf "%.0f", s}' "$out/results.tsv") s," \
         "mount: $(awk -F'\t' '{s+=$9} END {printf "%.0f", s}' "$out/results.tsv") s" \
         "(sums of per-file times), wall $elapsed s. Logs: $out"
} >> "$out/summary.txt"
cat "$out/summary.txt"
if [ ${#differ[@]} -gt 0 ]; then
    echo
    echo "Pass bare, not on the mount (${#differ[@]}); first failure of each in $out/failures.txt:"
    printf '  %s\n' "${differ[@]}"
    exit 1
fi
exit 0
