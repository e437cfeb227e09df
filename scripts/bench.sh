#!/usr/bin/env bash
# Benchmark suite of gcore-iam-bulk: throughput, pacing, latency hiding,
# memory and CSV speed, each next to a reference measured in the same run
# (the machines are small and shared, so ratios say more than absolutes).
#
#   scripts/bench.sh            full run (about 5 minutes after the build)
#   scripts/bench.sh --quick    smaller sizes, a smoke check (about a minute)
#   options: --no-build         use the release binary already built
#            --bin PATH         use this binary (implies --no-build)
#            --keep             keep the temp dir (inputs, results, logs)
#   BENCH_STEPS="c g" runs only those steps (the others show as not measured)
#
# Prints one table on stdout (progress goes to stderr) and exits 1 when a
# target is missed, 2 when the suite itself cannot run.
#
# Everything talks to 127.0.0.1 only: a canned nginx endpoint and the tool's
# own simulator (`gcore-iam-bulk simulate`), both on ports the OS picks.
# The build honours CARGO_TARGET_DIR, e.g. to keep out of another build's way:
#   CARGO_TARGET_DIR=/work/bench-target scripts/bench.sh

# The steps and the cleanup are called indirectly ("step_$step", trap), which
# the linter takes for unreachable code.
# shellcheck disable=SC2317
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
HELPER=$HERE/bench_helper.py

MODE=full BUILD=1 KEEP=0 BIN=
while (($#)); do
    case $1 in
    --quick) MODE=quick ;;
    --no-build) BUILD=0 ;;
    --bin)
        BIN=${2:?--bin needs a path}
        BUILD=0
        shift
        ;;
    --keep) KEEP=1 ;;
    -h | --help)
        sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench: unknown option $1 (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done

# Sizes. Full: the sizes the targets are defined for. Quick: same steps,
# small enough to finish in about a minute; its verdicts are only indicative
# (the memory ratio in particular needs the large input to mean anything).
if [[ $MODE == full ]]; then
    REPS=3          # timed measurements: best of REPS, tool and reference alternating
    A_ROWS=20000    # (a) rows through nginx, a few seconds of work
    WRK_SECS=5      # (a) wrk duration per repetition
    B_ROWS=2000     # (b) one curl process per row
    C_ROWS=250      # (c) rows at --rate 50/s: 5 s
    D_ROWS=320      # (d) rows at 100 ms each, 16 in flight: 2.0 s ideal
    E_SMALL=10000   # (e) peak RSS, small input
    E_LARGE=400000  # (e) peak RSS, large input
    F_ROWS=400000   # (f) --dry-run vs Python csv copy
    G_ROWS=200      # (g) rows per limit shape: 10 s at 20/s
else
    REPS=1 A_ROWS=10000 WRK_SECS=2 B_ROWS=300 C_ROWS=60 D_ROWS=320
    E_SMALL=2000 E_LARGE=20000 F_ROWS=40000 G_ROWS=60
fi
CONCURRENCY=16
RESELLER=900002
TOKEN=sim-token
# What nginx answers to every /iam/clients/{id} request: that account,
# holding what every row sends, so the tool's response check passes (the id
# is the one asked for and the values are the ones sent: rows end `updated`,
# as in a real run). GET /me gets account 1.
CANNED_BEFORE='{"id":'
CANNED_AFTER=',"resellers":900002,"status":"active"}'

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: FATAL: %s\n' "$*" >&2
    # Inside a step, the table shows why the step stopped.
    [[ -n ${STEP:-} && -n ${MEASURE:-} ]] && put_error "$STEP" "$*"
    exit 2
}

# ------------------------------------------------------------- dependencies

# Install what is missing from Debian's packages. nginx lives in /usr/sbin,
# which is not on a normal user's PATH.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
install_missing() {
    local pkgs=()
    [[ -x $NGINX ]] || pkgs+=(nginx-light)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v curl >/dev/null || pkgs+=(curl)
    [[ -x /usr/bin/time ]] || pkgs+=(time) # GNU time, for the peak RSS
    command -v python3 >/dev/null || pkgs+=(python3)
    ((${#pkgs[@]})) || return 0

    command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get to install them"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing ${pkgs[*]}; run as root or install sudo"
        sudo=(sudo)
    fi
    log "installing ${pkgs[*]} from Debian's packages"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        die "apt-get update failed"
    # nginx-light is gone from newer Debian releases; plain nginx does as well.
    if [[ " ${pkgs[*]} " == *" nginx-light "* ]] &&
        ! apt-cache show nginx-light >/dev/null 2>&1; then
        pkgs=("${pkgs[@]/nginx-light/nginx}")
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2 ||
        die "apt-get install ${pkgs[*]} failed"
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $NGINX ]] || die "nginx is still missing after the install"
}
install_missing
PY=$(command -v python3)

# -------------------------------------------------------------------- build

if [[ -z $BIN ]]; then
    # Ask cargo where the target dir is (CARGO_TARGET_DIR, config, or ./target).
    TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') ||
        die "cargo metadata failed"
    BIN=$TARGET_DIR/release/gcore-iam-bulk
fi
if ((BUILD)); then
    log "building the release binary (cargo build --release)"
    (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "no binary at $BIN (build it, or drop --no-build)"
# The floor of (a): a bare reqwest client built as the tool builds its own
# (examples/floor.rs), always from this checkout, with the same Cargo.lock.
FLOOR_TARGET=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') ||
    die "cargo metadata failed"
FLOOR=$FLOOR_TARGET/release/examples/floor
log "building the HTTP floor client (cargo build --release --example floor)"
(cd "$REPO" && cargo build --release --example floor) ||
    die "cargo build --release --example floor failed"

# ------------------------------------------------------- temp dir, cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gcore-bench.XXXXXX")
PIDS=$WORK/pids # every server started, for the cleanup (steps run in subshells)
: >"$PIDS"
MEASURE=$WORK/measurements # key=value lines; bench_helper.py report reads them

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    while read -r pid; do
        [[ -n $pid ]] && stop_pid "$pid"
    done <"$PIDS"
    if ((KEEP)); then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap, so the servers stop

# A stray default must never send a request off this machine: the tool's
# default API URL is the real Gcore API. Every run below passes --api-url too.
export GCORE_BASE_URL=http://127.0.0.1:9/unset
export GCORE_API_KEY=$TOKEN

put() { printf '%s=%s\n' "$1" "$2" >>"$MEASURE"; }
# An error message for the table: one line, not too long.
put_error() { put "error_$1" "$(printf '%s' "$2" | tr '\n' ' ' | cut -c1-300)"; }

put mode "$MODE"
put reps "$REPS"
put cpus "$(nproc)"
put when "$(date -u +%Y-%m-%dT%H:%MZ)"

# The i-th smallest / largest of some numbers (floats fine).
min_of() { printf '%s\n' "$@" | sort -g | head -n1; }
max_of() { printf '%s\n' "$@" | sort -g | tail -n1; }

# Input files, made once per size: header `client_id,reseller`, ids 1..N.
input_csv() {
    local f=$WORK/rows_$1.csv
    [[ -s $f ]] || "$PY" "$HELPER" gen-csv "$1" "$f" "$RESELLER"
    printf '%s' "$f"
}

# ------------------------------------------------------------------ servers

# nginx answering the canned account on a port the OS picked. One worker:
# it leaves the other core to the client measured, the same for every client.
start_nginx() {
    local dir=$WORK/nginx port
    mkdir -p "$dir"
    for _ in 1 2 3; do
        port=$("$PY" "$HELPER" freeport)
        cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # Temp paths inside the temp dir: the compiled-in ones need root.
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    # Keep connections open as long as the clients want (default 1000
    # requests) so no client pays for reconnects the others do not.
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$port;
        default_type application/json;
        # return answers any method, PATCH included, and discards the body.
        location ~ ^/iam/clients/([0-9]+)\$ { return 200 '$CANNED_BEFORE\$1$CANNED_AFTER'; }
        location = /iam/clients/me { return 200 '${CANNED_BEFORE}1$CANNED_AFTER'; }
        location / { return 404; }
    }
}
EOF
        "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/stderr" &
        NGINX_PID=$!
        echo "$NGINX_PID" >>"$PIDS"
        NGINX_URL=http://127.0.0.1:$port
        if "$PY" "$HELPER" wait-http "$NGINX_URL/iam/clients/1" 10 2>>"$dir/stderr" &&
            kill -0 "$NGINX_PID" 2>/dev/null; then
            log "nginx up at $NGINX_URL"
            return 0
        fi
        stop_pid "$NGINX_PID" # probably lost the port to someone else: again
    done
    die "nginx would not start: $(tail -n5 "$dir/stderr" "$dir/error.log" 2>/dev/null)"
}

# The tool's simulator with the given extra options; sets SIM_URL, SIM_PID.
start_sim() {
    local out=$WORK/sim.$$.$RANDOM i
    "$BIN" simulate --listen 127.0.0.1:0 --token "$TOKEN" --accounts 1-1000 "$@" \
        >"$out" 2>"$out.err" &
    SIM_PID=$!
    echo "$SIM_PID" >>"$PIDS"
    for ((i = 0; i < 200; i++)); do
        grep -qs '^listening on ' "$out" && break
        kill -0 "$SIM_PID" 2>/dev/null || break
        sleep 0.05
    done
    SIM_URL=$(sed -n 's/^listening on //p' "$out" | head -n1)
    [[ $SIM_URL == http://127.0.0.1:* ]] ||
        die "the simulator did not say where it listens: $(cat "$out" "$out.err")"
}

# ------------------------------------------------------------ tool runs

# tool_run NAME INPUT ARGS... : one `run` of the tool, timed (wall, whole
# process). Sets TOOL_SECS and TOOL_OUTCOMES; a run that does not end with
# exit 0 and one outcome per row is recorded as an error of step $STEP.
tool_run() {
    local name=$1 input=$2 rows
    shift 2
    local out=$WORK/$name.results.csv rc=0
    "$PY" "$HELPER" timeit "$WORK/$name.secs" -- "${WRAP[@]}" "$BIN" run "$input" -o "$out" \
        -y -q "$@" </dev/null 2>"$WORK/$name.stderr" || rc=$?
    TOOL_SECS=$(cat "$WORK/$name.secs")
    TOOL_OUTCOMES=$("$PY" "$HELPER" outcomes "$out" 2>&1) || TOOL_OUTCOMES="no results: $TOOL_OUTCOMES"
    rows=$(($(wc -l <"$input") - 1))
    local counted=0 kv
    for kv in $TOOL_OUTCOMES; do
        [[ $kv == *=* && ${kv#*=} =~ ^[0-9]+$ ]] && counted=$((counted + ${kv#*=}))
    done
    log "$name: ${TOOL_SECS}s, exit $rc, $TOOL_OUTCOMES"
    # Rows missing from the results: the time measured nothing, stop the step.
    # All rows there but a non-zero exit (e.g. rows ended `mismatch`): the
    # time still stands, but the table flags the step.
    local why
    why="$name: exit $rc, $counted of $rows rows in the results ($TOOL_OUTCOMES); stderr: $(tail -n3 "$WORK/$name.stderr")"
    ((counted == rows)) || die "$why"
    ((rc == 0)) || put_error "$STEP" "$why"
}
WRAP=() # a command put in front of the tool: /usr/bin/time for (e)

# ----------------------------------------------------------------- steps

# (a) rows/s with 16 in flight against nginx, judged against the floor of
# the tool's own HTTP stack (examples/floor.rs: the same reqwest and tokio,
# the same PATCH, 16 in flight, nothing else), best of REPS each, the three
# alternating. wrk's req/s on the same endpoint is shown for scale.
step_a() {
    local input lua rep out rps tools=() wrks=() floors=() secs
    input=$(input_csv "$A_ROWS")
    lua=$WORK/patch.lua
    cat >"$lua" <<EOF
wrk.method = "PATCH"
wrk.body = '{"reseller":$RESELLER}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "APIKey $TOKEN"
EOF
    local wrk_args=(-t1 -c"$CONCURRENCY" -d"${WRK_SECS}s")
    put a_rows "$A_ROWS"
    put a_wrk_args "wrk ${wrk_args[*]}"
    for ((rep = 1; rep <= REPS; rep++)); do
        # wrk first: its figure is still shown when the tool's run fails.
        out=$(wrk "${wrk_args[@]}" -s "$lua" "$NGINX_URL/iam/clients/1")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        [[ -n $rps ]] || die "wrk printed no Requests/sec: $out"
        grep -q 'Non-2xx' <<<"$out" && put_error a "wrk got non-2xx answers: $(grep Non-2xx <<<"$out")"
        log "wrk: $rps req/s"
        wrks+=("$rps")
        # Timed as the tool is: the whole process, start-up included.
        "$PY" "$HELPER" timeit "$WORK/a_floor$rep.secs" -- \
            "$FLOOR" "$NGINX_URL" "$A_ROWS" "$CONCURRENCY" >/dev/null ||
            die "the floor client failed"
        secs=$(cat "$WORK/a_floor$rep.secs")
        log "floor: ${secs}s for $A_ROWS rows"
        floors+=("$secs")
        tool_run "a$rep" "$input" --api-url "$NGINX_URL" --rate unlimited \
            --concurrency "$CONCURRENCY"
        tools+=("$TOOL_SECS")
    done
    put a_tool_secs "$(min_of "${tools[@]}")"
    put a_floor_secs "$(min_of "${floors[@]}")"
    put a_wrk_rps "$(max_of "${wrks[@]}")"
}

# (b) one curl process per row, 16 at a time: what a shell loop achieves.
step_b() {
    local ids=$WORK/ids_b rep secs=() rc
    seq 1 "$B_ROWS" >"$ids"
    put b_rows "$B_ROWS"
    for ((rep = 1; rep <= REPS; rep++)); do
        rc=0
        "$PY" "$HELPER" timeit "$WORK/b$rep.secs" -- xargs -a "$ids" -P"$CONCURRENCY" -I'{}' \
            curl -sS --fail -o /dev/null -X PATCH \
            -H "Authorization: APIKey $TOKEN" -H 'Content-Type: application/json' \
            --data "{\"reseller\":$RESELLER}" "$NGINX_URL/iam/clients/{}" || rc=$?
        ((rc == 0)) || die "curl under xargs failed (exit $rc)"
        secs+=("$(cat "$WORK/b$rep.secs")")
        log "curl: ${secs[-1]}s for $B_ROWS rows"
    done
    put b_curl_secs "$(min_of "${secs[@]}")"
}

# (c) pacing: --rate 50/s, judged from the arrival times the simulator
# recorded (the server's view, which is what a rate limit sees).
step_c() {
    ((C_ROWS <= 1000)) || die "C_ROWS must be within the simulator's accounts 1-1000"
    start_sim
    put c_rows "$C_ROWS"
    tool_run c "$(input_csv "$C_ROWS")" --api-url "$SIM_URL" --rate 50/s --burst 1
    "$PY" "$HELPER" sim-stats "$SIM_URL" c >>"$MEASURE"
    stop_pid "$SIM_PID"
}

# (d) latency hiding: every answer 100 ms late, 16 in flight, no rate limit.
# Judged on the wall time of the whole command (start-up and the GET /me
# included); the simulator's first-to-last PATCH span is shown beside it.
step_d() {
    local rep walls=() spans=() input
    ((D_ROWS <= 1000)) || die "D_ROWS must be within the simulator's accounts 1-1000"
    input=$(input_csv "$D_ROWS")
    start_sim --latency 100ms
    put d_rows "$D_ROWS"
    for ((rep = 1; rep <= REPS; rep++)); do
        curl -sS --fail -o /dev/null -X DELETE "$SIM_URL/_sim/requests" ||
            die "cannot clear the simulator's record"
        tool_run "d$rep" "$input" --api-url "$SIM_URL" --rate unlimited \
            --concurrency "$CONCURRENCY"
        walls+=("$TOOL_SECS")
        spans+=("$("$PY" "$HELPER" sim-stats "$SIM_URL" d | sed -n 's/^d_span=//p')")
    done
    put d_wall_secs "$(min_of "${walls[@]}")"
    put d_span "$(min_of "${spans[@]}")"
    stop_pid "$SIM_PID"
}

# (e) peak RSS of real runs against nginx: memory must not grow with the input.
step_e() {
    local size rss
    put e_small_rows "$E_SMALL"
    put e_large_rows "$E_LARGE"
    for size in small large; do
        local rows_var=E_${size^^}
        WRAP=(/usr/bin/time -v -o "$WORK/e_$size.time")
        tool_run "e_$size" "$(input_csv "${!rows_var}")" --api-url "$NGINX_URL" \
            --rate unlimited --concurrency "$CONCURRENCY"
        WRAP=()
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/e_$size.time")
        [[ $rss =~ ^[0-9]+$ ]] || die "no peak RSS in $(cat "$WORK/e_$size.time")"
        log "e_$size: peak RSS $rss kB"
        put "e_${size}_rss_kb" "$rss"
    done
}

# (f) --dry-run (read, check, write every row) next to the plainest Python
# csv copy of the same file.
step_f() {
    local input rep tools=() pys=() rc
    input=$(input_csv "$F_ROWS")
    put f_rows "$F_ROWS"
    for ((rep = 1; rep <= REPS; rep++)); do
        tool_run "f$rep" "$input" --api-url "$NGINX_URL" --dry-run
        tools+=("$TOOL_SECS")
        rc=0
        "$PY" "$HELPER" timeit "$WORK/f_py$rep.secs" -- \
            "$PY" "$HELPER" csv-copy "$input" "$WORK/f_py$rep.csv" || rc=$?
        ((rc == 0)) || die "the Python csv copy failed (exit $rc)"
        pys+=("$(cat "$WORK/f_py$rep.secs")")
        log "python csv copy: ${pys[-1]}s"
    done
    put f_tool_secs "$(min_of "${tools[@]}")"
    put f_python_secs "$(min_of "${pys[@]}")"
}

# nginx with `limit_req` at 20 r/s, as a real API front end would be: one
# server without burst (one request per 50 ms), one with `burst=20 nodelay`,
# and one without burst keeping nginx's default status for a refusal (503),
# each passing what it admits to the canned nginx (a `return` would answer
# before `limit_req` runs).
# Each logs `$msec $status $request_method` per request. Sets LIMITED_URLS
# (strict, burst, strict answering 503) and LIMITED_LOGS.
start_limited_nginx() {
    local dir=$WORK/nginx-limited strict burst status503
    mkdir -p "$dir"
    strict=$("$PY" "$HELPER" freeport)
    burst=$("$PY" "$HELPER" freeport)
    status503=$("$PY" "$HELPER" freeport)
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    log_format limited '\$msec \$status \$request_method';
    limit_req_zone \$server_port zone=strict:1m rate=20r/s;
    limit_req_zone \$server_port zone=burst:1m rate=20r/s;
    limit_req_zone \$server_port zone=status503:1m rate=20r/s;
    limit_req_status 429;
    default_type application/json;
    server {
        listen 127.0.0.1:$strict;
        access_log $dir/strict.log limited;
        location /iam/clients/ { limit_req zone=strict; proxy_pass $NGINX_URL; }
    }
    server {
        listen 127.0.0.1:$burst;
        access_log $dir/burst.log limited;
        location /iam/clients/ { limit_req zone=burst burst=20 nodelay; proxy_pass $NGINX_URL; }
    }
    server {
        listen 127.0.0.1:$status503;
        access_log $dir/status503.log limited;
        limit_req_status 503;
        location /iam/clients/ { limit_req zone=status503; proxy_pass $NGINX_URL; }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/stderr" &
    echo $! >>"$PIDS"
    "$PY" "$HELPER" wait-port "$strict" 10 ||
        die "limited nginx would not start: $(cat "$dir/stderr" "$dir/error.log" 2>/dev/null)"
    LIMITED_URLS=("http://127.0.0.1:$strict" "http://127.0.0.1:$burst" "http://127.0.0.1:$status503")
    LIMITED_LOGS=("$dir/strict.log" "$dir/burst.log" "$dir/status503.log")
}

# (g) pacing against limits of the shapes real APIs use, asking 5x the
# limit at concurrency 8: first-to-last success next to the least time the
# limit allows at that rate, and the 429s. Judged where the controller is
# meant to reach the goal today; the others are shown as met or open.
step_g() {
    local input
    input=$(input_csv "$G_ROWS")
    start_limited_nginx
    # name | label | judged | shape for the ideal | where | asked per second
    # [| more flags for the run]
    local cases=(
        "nginx_strict|nginx limit_req 20r/s, no burst, no Retry-After|1|bucket:20:1|nginx:0|100"
        "nginx_503|nginx limit_req 20r/s, no burst, default status 503, --throttle-status 503|1|bucket:20:1|nginx:2|100|--throttle-status 503"
        "nginx_burst|nginx limit_req 20r/s burst=20 nodelay|1|bucket:20:21|nginx:1|100"
        "bucket_ra|bucket 20/s burst 1, Retry-After|1|bucket:20:1|--limit bucket:20:1|100"
        "bucket_ietf|bucket 20/s burst 40, RateLimit headers|1|bucket:20:40|--limit bucket:20:40 --ratelimit-headers ietf-structured|100"
        "sliding_ietf|20 per rolling 1 s, RateLimit headers|1|sliding:20:1|--limit sliding:20:1 --ratelimit-headers ietf|100"
        "window_x|20 per fixed 1 s window, X-RateLimit headers|1|window:20:1|--limit window:20:1 --ratelimit-headers x|100"
        "sliding_ra|20 per rolling 1 s (DRF), Retry-After|1|sliding:20:1|--limit sliding:20:1|100"
        "sliding3_ra|60 per rolling 3 s (DRF), Retry-After|1|sliding:60:3|--limit sliding:60:3|100"
        "window_ra|20 per fixed 1 s window, Retry-After (open: phase)|0|window:20:1|--limit window:20:1|100"
        "sliding_silent|20 per rolling 1 s, no Retry-After|1|sliding:20:1|--limit sliding:20:1 --no-retry-after|100"
        "window_silent|20 per fixed 1 s window, no Retry-After (open: phase)|0|window:20:1|--limit window:20:1 --no-retry-after|100"
        "nginx_strict_50x|nginx limit_req 20r/s, no burst, asking 50x|0|bucket:20:1|nginx:0|1000"
        "sliding_silent_50x|20 per rolling 1 s, no Retry-After, asking 50x|0|sliding:20:1|--limit sliding:20:1 --no-retry-after|1000"
        # 50 ms from the server (the simulator holds each request that long
        # before its limit sees it): where a user's cron host stands.
        "far_bucket_ietf|50 ms away: bucket 20/s burst 1, RateLimit headers|1|bucket:20:1|--latency=50ms --limit bucket:20:1 --ratelimit-headers ietf|100"
        "far_window_x|50 ms away: 100 per fixed 5 s window, X-RateLimit headers|1|window:100:5|--latency=50ms --limit window:100:5 --ratelimit-headers x|100"
        "far_bucket_ra|50 ms away: bucket 20/s burst 1, Retry-After|0|bucket:20:1|--latency=50ms --limit bucket:20:1|100"
        "far_bucket5_50x|50 ms away: bucket 20/s burst 5, Retry-After, asking 50x|0|bucket:20:5|--latency=50ms --limit bucket:20:5|1000"
        "far_sliding_ra_50x|50 ms away: 20 per rolling 1 s, Retry-After, asking 50x|0|sliding:20:1|--latency=50ms --limit sliding:20:1|1000"
    )
    local case name label judged shape where asked flags url source
    for case in "${cases[@]}"; do
        IFS='|' read -r name label judged shape where asked flags <<<"$case"
        if [[ $where == nginx:* ]]; then
            url=${LIMITED_URLS[${where#nginx:}]}
            source=${LIMITED_LOGS[${where#nginx:}]}
            # One run per log: nginx appends (O_APPEND), so emptying it
            # leaves only this run's lines.
            : >"$source"
        else
            # shellcheck disable=SC2086 # the options are words on purpose
            start_sim $where
            url=$SIM_URL
            source=$SIM_URL
        fi
        put "g_${name}_label" "$label"
        put "g_${name}_judged" "$judged"
        # shellcheck disable=SC2086 # the flags are words on purpose
        tool_run "g_$name" "$input" --api-url "$url" --rate "$asked/s" --concurrency 8 $flags
        "$PY" "$HELPER" limit-stats "$source" "g_$name" "$shape" "$G_ROWS" "$asked" >>"$MEASURE"
        [[ $where == nginx:* ]] || stop_pid "$SIM_PID"
    done
}

# Each step runs in a subshell with errexit, so a failing step is recorded
# (and shown in the table as not measured) while the others still run.
run_step() {
    local step=$1 rc=0
    log "---- step ($step)"
    set +e
    (
        set -e
        STEP=$step
        "step_$step"
    )
    rc=$?
    set -e
    if ((rc != 0)) && ! grep -q "^error_$step=" "$MEASURE"; then
        put_error "$step" "the step stopped (exit $rc); see the bench: lines above"
    fi
}

log "binary: $BIN ($MODE run, temp dir $WORK)"
start_nginx
STEPS=${BENCH_STEPS:-a b c d e f g}
for step in $STEPS; do
    run_step "$step"
done

rc=0
"$PY" "$HELPER" report "$MEASURE" || rc=$?
exit "$rc"
