#!/usr/bin/env bash
# Peak memory of gcore-iam-bulk on hostile input: every file the test suite
# throws at it (tests/integration/messages.rs, hostile.rs) and the cases of
# issue 11, at full size. Each must stay under 64 MB of resident memory,
# whatever the size of the input, because no record is ever held whole.
#
#   scripts/bench-hostile.sh               the release binary (built if missing)
#   scripts/bench-hostile.sh --bin PATH    another binary (a debug one is slow
#                                          on the 1.5 GB line: its memchr is
#                                          not optimised)
#   scripts/bench-hostile.sh --quick       150 MB instead of 1.5 GB, 5 s
#                                          instead of 20 (a smoke check)
#
# Prints one line per case (exit code, peak RSS, seconds) and exits 1 when a
# case goes over the limit or ends otherwise than it should, 2 when it cannot
# run. Inputs are written to a temporary directory (about 130 MB) or piped
# (the 1.5 GB line and the line that never ends), and removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIMIT_KB=$((64 * 1000))
BIN=
BIG=1500000000 NEVER=20
while (($#)); do
    case $1 in
    --quick)
        BIG=150000000
        NEVER=5
        ;;
    --bin)
        BIN=${2:?--bin needs a path}
        shift
        ;;
    *)
        echo "unknown option: $1" >&2
        exit 2
        ;;
    esac
    shift
done
if [[ -z $BIN ]]; then
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/gcore-iam-bulk
    [[ -x $BIN ]] || (cd "$REPO" && cargo build --release --locked >&2)
fi
BIN=$(realpath "$BIN")
[[ -x /usr/bin/time ]] || {
    echo "needs GNU time at /usr/bin/time" >&2
    exit 2
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

failed=0
printf '%-34s %-30s %5s %9s %8s\n' case expected exit "peak MB" seconds

# measure NAME EXPECTED_EXIT COMMAND...: runs COMMAND under /usr/bin/time
# (its descendants included: the tool under `timeout` or behind a pipe).
measure() {
    local name=$1 want=$2
    shift 2
    local start end code rss
    start=$(date +%s.%N)
    set +e
    /usr/bin/time -v -o time.txt "$@" >/dev/null 2>stderr.txt
    code=$?
    set -e
    end=$(date +%s.%N)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' time.txt)
    # /usr/bin/time reports the command's own exit code, or 128+N for a signal.
    local verdict=ok
    if ((rss > LIMIT_KB)); then verdict="OVER 64 MB"; fi
    if [[ $code != "$want" ]]; then verdict="exit $code, wanted $want"; fi
    if grep -q panicked stderr.txt; then verdict="panicked"; fi
    [[ $verdict == ok ]] || failed=1
    printf '%-34s %-30s %5s %9.1f %8.1f  %s\n' "$name" "exit $want" "$code" \
        "$(awk -v r="$rss" 'BEGIN{print r/1000}')" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')" "$verdict"
    if [[ $verdict != ok ]]; then sed 's/^/    /' stderr.txt | head -c 2000 >&2; fi
}

dry() { "$BIN" run "$1" -o "$1.out" --dry-run --force; }
export -f dry
export BIN BIG NEVER

# One million unknown columns, short (2 MB: under the record limit) and
# named (11 MB: over it).
python3 -c 'import sys; sys.stdout.write("c," * 1000000 + "client_id\n1\n")' >columns-short.csv
python3 -c 'import sys; sys.stdout.write(",".join("column%07d" % i for i in range(1000000)) + ",client_id\n1\n")' >columns-named.csv
measure "1M columns, 2 MB header" 2 bash -c 'dry columns-short.csv'
measure "1M columns, 11 MB header" 2 bash -c 'dry columns-named.csv'

# A 100 MB header cell.
{
    printf 'client_id,'
    head -c 100000000 /dev/zero | tr '\0' n
    printf '\n1,2\n'
} >header-cell.csv
measure "100 MB header cell" 2 bash -c 'dry header-cell.csv'

# 500 unknown columns, and one unknown name of 100 000 characters.
python3 -c 'print("client_id," + ",".join("extra%d" % i for i in range(500))); print(1)' >some-unknown.csv
python3 -c 'print("client_id," + "x" * 100000); print("1,2")' >long-name.csv
measure "500 unknown columns" 2 bash -c 'dry some-unknown.csv'
measure "100 000-character column name" 2 bash -c 'dry long-name.csv'

# Rows: a 3 MB line and a 3.3 MB quoted cell over 300 000 lines, between
# valid rows (the test suite's file), then the same at 1.5 GB from a pipe.
python3 - <<'EOF'
with open("long-rows.csv", "wb") as f:
    f.write(b"client_id,name\n1,a\n2," + b"x" * (3 << 20) + b"\n3,b\n4,\"")
    f.write(b"yyyyyyyyy\r\n" * 300000)
    f.write(b"\"\n5,c\n")
EOF
measure "3 MB line, 3.3 MB quoted cell" 1 bash -c 'dry long-rows.csv'
# The same, and a row of two million fields, in runs that send (to the
# built-in simulator): the rows are also counted for progress, on another
# thread, and read for the simulator's accounts.
python3 -c 'import sys; sys.stdout.write("client_id,reseller\n1,2\n2," + "," * 2000000 + "\n3,4\n")' >many-fields.csv
measure "3 MB line, 3.3 MB cell, sent" 1 \
    "$BIN" run long-rows.csv -o long-rows.sent --simulator --rate unlimited --force
measure "row of 2M fields, sent" 1 \
    "$BIN" run many-fields.csv -o many-fields.sent --simulator --rate unlimited --force
measure "$((BIG / 1000000)) MB line (stdin)" 0 bash -c \
    '{ printf "client_id,name\n1,a\n2,"; head -c "$BIG" /dev/zero | tr "\0" x; printf "\n3,b\n"; } |
     "$BIN" run - -o long-line.out --dry-run --force; test $? = 1'
measure "$((BIG / 1000000)) MB quoted cell (stdin)" 0 bash -c \
    '{ printf "client_id,name\n1,\""; head -c "$BIG" /dev/zero | tr "\0" "\n"; printf "\"\n3,b\n"; } |
     "$BIN" run - -o long-cell.out --dry-run --force; test $? = 1'
# A line that never ends: stopped after 20 s (exit 124 from timeout).
measure "never-ending line, ${NEVER} s (stdin)" 124 bash -c \
    '{ printf "client_id,name\n1,"; yes x | tr -d "\n"; } |
     timeout "$NEVER" "$BIN" run - -o never.out --dry-run --force'
measure "never-ending header, (stdin)" 0 bash -c \
    '{ yes x | tr -d "\n"; } | "$BIN" run - -o never-header.out --dry-run --force; test $? = 2'

# The test suite's other hostile inputs.
head -c 4096 /dev/zero >zeros.bin
python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 2654435761 >> 13) & 255 for i in range(4096)))' >random.bin
measure "4 KiB of zeros" 2 bash -c 'dry zeros.bin'
measure "4 KiB of noise" 2 bash -c 'dry random.bin'

# A results file with a 20 MB line: --resume and `results` refuse it.
printf 'client_id,reseller\n1,9\n' >in.csv
"$BIN" run in.csv -o ledger.csv --dry-run --force 2>/dev/null
{
    printf '5,4,failed,,1,,'
    head -c 20000000 /dev/zero | tr '\0' x
    printf ',,,,,\n'
} >>ledger.csv
measure "results file, 20 MB line: --resume" 2 \
    "$BIN" run in.csv -o ledger.csv --dry-run --resume
measure "results file, 20 MB line: results" 2 \
    "$BIN" results ledger.csv -o final.csv

if ((failed)); then
    echo "some case missed its target" >&2
    exit 1
fi
