#!/usr/bin/env python3
"""Small helpers for scripts/bench.sh (Python standard library only).

bench.sh does the orchestration (servers, processes, timing); the pieces that
are awkward in bash live here: free ports, float arithmetic, JSON, CSV, and
the final table. Every subcommand talks to 127.0.0.1 only.

Subcommands:
  freeport                         print a TCP port on 127.0.0.1 that is free now
  gen-csv N PATH [RESELLER]        write `client_id,reseller` rows for ids 1..N
  wait-http URL SECONDS            wait until URL answers anything over HTTP
  timeit OUT -- CMD...             run CMD, write its wall time (s) to OUT, exit as CMD
  outcomes RESULTS                 print `outcome=count` pairs of a results CSV
  sim-stats URL OUT_PREFIX         arrival statistics of the simulator's PATCHes
  csv-copy IN OUT                  the Python baseline of (f): csv copy row by row
  report MEASUREMENTS              print the table; exit 1 if a target is missed
"""

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def die(message):
    print(f"bench_helper: {message}", file=sys.stderr)
    sys.exit(2)


def freeport():
    # Binding port 0 lets the kernel choose; the port is free again once the
    # socket closes. Another process could take it in between, so bench.sh
    # retries a server start that fails to bind.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def gen_csv(n, path, reseller="900002"):
    # Distinct client ids: the tool may reject a repeated id in one file.
    with open(path, "w", newline="") as f:
        f.write("client_id,reseller\n")
        chunk = []
        for i in range(1, int(n) + 1):
            chunk.append(f"{i},{reseller}\n")
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def wait_http(url, seconds):
    deadline = time.monotonic() + float(seconds)
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (even 401/404) means the server is up
        except OSError as e:
            last = e
            time.sleep(0.05)
    die(f"{url} did not answer within {seconds}s (last error: {last})")


def wait_port(port, seconds):
    """Waits until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    die(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def timeit(out, cmd):
    # The clock starts after Python itself is up, so its start-up is not
    # counted against the command measured.
    start = time.monotonic()
    rc = subprocess.call(cmd)
    elapsed = time.monotonic() - start
    with open(out, "w") as f:
        f.write(f"{elapsed:.6f}\n")
    sys.exit(rc)


def outcomes(path):
    counts = {}
    if not os.path.exists(path):
        die(f"no results file {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "outcome" not in reader.fieldnames:
            die(f"{path} has no `outcome` column (header: {reader.fieldnames})")
        for row in reader:
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def sim_stats(url, prefix):
    """Arrival statistics of the PATCH requests the simulator recorded.

    Writes `<prefix>_n`, `_rate` ((n-1)/(last-first)), `_maxwin` (most
    arrivals in any half-open 1 s window [t, t+1)) and `_span` (last-first)
    as key=value lines on stdout, for bench.sh to append to its file.
    """
    with urllib.request.urlopen(url.rstrip("/") + "/_sim/requests", timeout=10) as r:
        records = json.load(r)
    times = sorted(float(x["at_seconds"]) for x in records if x.get("method") == "PATCH")
    n = len(times)
    print(f"{prefix}_n={n}")
    if n < 2:
        return
    span = times[-1] - times[0]
    print(f"{prefix}_span={span:.6f}")
    print(f"{prefix}_rate={(n - 1) / span if span > 0 else math.inf:.6f}")
    # A busiest window can always be slid to start at an arrival, so checking
    # the windows that start at each arrival finds the maximum.
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < n and times[j] < t + 1.0:
            j += 1
        best = max(best, j - i)
    print(f"{prefix}_maxwin={best}")


def greedy_seconds(shape, rows, asked, before=0):
    """The least time from the first accepted request to the last for `rows`
    requests under a limit of `shape` (bucket:R:B, sliding:N:S, window:N:S),
    sent at most `asked` a second, each as early as both allow: the time the
    limit itself needs at that rate. The same model as the simulator's.
    `before` requests go first under the same limit and are not timed (the
    run's token check, `GET /iam/clients/me`, which the limit counts too)."""
    kind, a, b = shape.split(":")
    a, b = float(a), float(b)
    spacing = 1.0 / asked
    t, first = 0.0, None
    tokens, last, log, win, count = b, 0.0, [], -1, 0
    for i in range(before + rows):
        while True:
            if kind == "bucket":
                tokens = min(b, tokens + (t - last) * a)
                last = t
                if tokens >= 1 - 1e-9:
                    tokens -= 1
                    break
                t += (1 - tokens) / a + 1e-9
            elif kind == "sliding":
                log = [x for x in log if x > t - b]
                if len(log) < a:
                    log.append(t)
                    break
                t = log[0] + b + 1e-9
            else:
                w = math.floor(t / b)
                if w != win:
                    win, count = w, 0
                if count < a:
                    count += 1
                    break
                t = (w + 1) * b + 1e-9
        if first is None and i >= before:
            first = t
        t += spacing
    return t - spacing - first


def limit_stats(source, prefix, shape, rows, asked):
    """How a run against a rate limit went: from the simulator's record
    (source = its URL) or an nginx access log (`$msec $status $request_method`
    lines), the first-to-last accepted PATCH, the 429s (or 503s), and the
    ideal."""
    if source.startswith("http"):
        with urllib.request.urlopen(source.rstrip("/") + "/_sim/requests", timeout=10) as r:
            records = json.load(r)
        seen = [(float(x["at_seconds"]), x.get("status"), x.get("method")) for x in records]
    else:
        seen = []
        with open(source) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    seen.append((float(parts[0]), int(parts[1]), parts[2]))
    ok = sorted(t for t, status, method in seen if method == "PATCH" and status == 200)
    # (503: an nginx limit keeping its default status; nothing else here
    # answers it.)
    throttled = sum(1 for _, status, _ in seen if status in (429, 503))
    took = ok[-1] - ok[0] if len(ok) > 1 else 0.0
    # The run checks its token first, and the limit counts that request.
    ideal = greedy_seconds(shape, int(rows), float(asked), before=1)
    print(f"{prefix}_shape={shape}")
    print(f"{prefix}_rows={rows}")
    print(f"{prefix}_ok={len(ok)}")
    print(f"{prefix}_took={took:.3f}")
    print(f"{prefix}_ideal={ideal:.3f}")
    print(f"{prefix}_throttled={throttled}")


def csv_copy(src, dst):
    # The plainest Python copy: read each row, write it again.
    with open(src, newline="") as fi, open(dst, "w", newline="") as fo:
        writer = csv.writer(fo)
        for row in csv.reader(fi):
            writer.writerow(row)


# --------------------------------------------------------------------- report


def load(path):
    """key=value lines; a repeated error_* key keeps all its messages."""
    m = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                if k.startswith("error_") and k in m:
                    v = f"{m[k]} | {v}"
                m[k] = v
    return m


def report(path):
    m = load(path)
    rows = []  # (section, metric, measured, target, verdict)
    missed = []

    def num(key):
        try:
            return float(m[key])
        except (KeyError, ValueError):
            return None

    def error(steps):
        """The errors of these steps (a ratio depends on every step it uses)."""
        return "; ".join(m[f"error_{s}"] for s in steps if f"error_{s}" in m)

    def info(section, metric, value):
        rows.append((section, metric, value, "", ""))

    def check(section, steps, metric, value, shown, target, ok):
        """A row with a target. value None means the measurement is missing;
        a value measured by a step that reported an error fails too."""
        err = error(steps)
        if value is None:
            verdict = "FAIL"
            shown = "not measured"
        else:
            verdict = "PASS" if ok(value) else "FAIL"
        if err and verdict == "PASS":
            verdict = "FAIL"  # measured, but the run itself went wrong
        if verdict == "FAIL":
            missed.append(f"{section} {metric}")
        rows.append((section, metric, shown, target, verdict))

    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    reps = m.get("reps", "?")

    # (a) throughput against nginx, judged against the HTTP stack's floor
    rows_a, secs_a, wrk = num("a_rows"), num("a_tool_secs"), num("a_wrk_rps")
    floor_secs = num("a_floor_secs")
    tool_rps = rows_a / secs_a if rows_a and secs_a else None
    floor_rps = rows_a / floor_secs if rows_a and floor_secs else None
    info("(a)", f"tool rows/s, {fmt(rows_a, '.0f')} rows, --concurrency 16, nginx",
         fmt(tool_rps, ",.0f"))
    info("(a)", "floor rows/s: bare reqwest, same stack, 16 in flight (examples/floor.rs)",
         fmt(floor_rps, ",.0f"))
    info("(a)", f"wrk req/s, {m.get('a_wrk_args', '?')} (for scale, not judged)", fmt(wrk, ",.0f"))
    if tool_rps and wrk:
        info("(a)", "tool / wrk (not judged)", fmt(tool_rps / wrk, ".3f"))
    ratio = tool_rps / floor_rps if tool_rps and floor_rps else None
    check("(a)", "a", "tool / floor", ratio, fmt(ratio, ".3f"), ">= 0.9", lambda r: r >= 0.9)

    # (b) one curl process per row under xargs -P16
    rows_b, secs_b = num("b_rows"), num("b_curl_secs")
    curl_rps = rows_b / secs_b if rows_b and secs_b else None
    info("(b)", f"curl rows/s, {fmt(rows_b, '.0f')} rows, xargs -P16", fmt(curl_rps, ",.1f"))
    ratio = tool_rps / curl_rps if tool_rps and curl_rps else None
    check("(b)", "ab", "tool / curl", ratio, fmt(ratio, ".1f"), ">= 50", lambda r: r >= 50)

    # (c) pacing at --rate 50/s, from the simulator's arrival times
    n_c, rate_c, win_c = num("c_n"), num("c_rate"), num("c_maxwin")
    info("(c)", f"PATCHes recorded (of {m.get('c_rows', '?')} rows)", fmt(n_c, ".0f"))
    check("(c)", "c", "achieved rate /s, (n-1)/(last-first)", rate_c, fmt(rate_c, ".3f"),
          "50 +/- 3 %", lambda r: abs(r - 50.0) <= 1.5)
    check("(c)", "c", "most PATCHes in any 1 s window", win_c, fmt(win_c, ".0f"),
          "<= 51", lambda w: w <= 51)

    # (d) latency hiding: 100 ms answers, 16 in flight
    rows_d, wall_d, span_d = num("d_rows"), num("d_wall_secs"), num("d_span")
    ideal = rows_d * 0.1 / 16 if rows_d else None
    info("(d)", f"ideal s ({fmt(rows_d, '.0f')} x 0.1 s / 16)", fmt(ideal, ".3f"))
    info("(d)", "wall s of the whole command (incl. GET /me)", fmt(wall_d, ".3f"))
    info("(d)", "sim first-to-last PATCH + 0.1 s (not judged)",
         fmt(span_d + 0.1 if span_d is not None else None, ".3f"))
    ratio = ideal / wall_d if ideal and wall_d else None
    check("(d)", "d", "ideal / wall", ratio, fmt(ratio, ".3f"), ">= 0.9", lambda r: r >= 0.9)

    # (e) peak RSS, small vs large input
    small, large = num("e_small_rss_kb"), num("e_large_rss_kb")
    ssmall, slarge = m.get("e_small_rows", "?"), m.get("e_large_rows", "?")
    info("(e)", f"peak RSS MB, {ssmall} rows", fmt(small / 1024 if small else None, ".1f"))
    check("(e)", "e", f"peak RSS MB, {slarge} rows", large,
          fmt(large / 1024 if large else None, ".1f"), "<= 64", lambda kb: kb <= 64 * 1024)
    ratio = large / small if large and small else None
    check("(e)", "e", f"RSS({slarge}) / RSS({ssmall})", ratio, fmt(ratio, ".2f"),
          "<= 1.5", lambda r: r <= 1.5)

    # (f) --dry-run vs Python's csv module
    rows_f, dry, py = num("f_rows"), num("f_tool_secs"), num("f_python_secs")
    info("(f)", f"tool --dry-run s, {fmt(rows_f, '.0f')} rows", fmt(dry, ".3f"))
    info("(f)", "python csv copy s, same file", fmt(py, ".3f"))
    ratio = py / dry if py and dry else None
    check("(f)", "f", "python / tool", ratio, fmt(ratio, ".2f"), ">= 3", lambda r: r >= 3)

    # (g) pacing against limits of real shapes, asked 5x the limit
    for key in sorted(k for k in m if k.startswith("g_") and k.endswith("_shape")):
        name = key[len("g_"):-len("_shape")]
        p = f"g_{name}"
        rows_g, ok_g = num(f"{p}_rows"), num(f"{p}_ok")
        took, ideal, thr = num(f"{p}_took"), num(f"{p}_ideal"), num(f"{p}_throttled")
        label = m.get(f"{p}_label", name)
        ratio = took / ideal if took and ideal else None
        shown = (f"{fmt(rows_g, '.0f')} rows: {fmt(took, '.2f')} s / ideal {fmt(ideal, '.2f')} s"
                 f" = {fmt(ratio, '.3f')}, {fmt(thr, '.0f')} x 429")
        judged = m.get(f"{p}_judged") == "1"
        good = (ratio is not None and ok_g == rows_g and ratio <= 1.15
                and thr is not None and thr <= 0.05 * rows_g)
        if judged:
            check("(g)", "g", label, ratio, shown, "<= 1.15, 429s <= 5 %", lambda _r: good)
        else:
            rows.append(("(g)", label, shown, "<= 1.15, 429s <= 5 %",
                         "met" if good else "open"))

    # ---- print
    head = ("", "metric", "measured", "target", "result")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    title = (f"gcore-iam-bulk benchmark ({m.get('mode', '?')} run; timings best of {reps}; "
             f"{m.get('cpus', '?')} CPUs; {m.get('when', '')})")
    print(title)
    print(line)
    print("  ".join(str(c).ljust(w) for c, w in zip(head, widths)).rstrip())
    print(line)
    last = None
    for r in rows:
        if last is not None and r[0] != last:
            print()
        last = r[0]
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(line)
    errors = sorted((k[len("error_"):], v) for k, v in m.items() if k.startswith("error_"))
    for step, msg in errors:
        print(f"({step}) error: {msg}")
    if missed:
        print(f"MISSED {len(missed)} target(s): " + "; ".join(missed))
        sys.exit(1)
    print("all targets met")


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "freeport":
        freeport()
    elif cmd == "gen-csv":
        gen_csv(*args)
    elif cmd == "wait-http":
        wait_http(*args)
    elif cmd == "timeit":
        if len(args) < 3 or args[1] != "--":
            die("usage: timeit OUT -- CMD...")
        timeit(args[0], args[2:])
    elif cmd == "outcomes":
        outcomes(*args)
    elif cmd == "sim-stats":
        sim_stats(*args)
    elif cmd == "wait-port":
        wait_port(*args)
    elif cmd == "limit-stats":
        limit_stats(*args)
    elif cmd == "csv-copy":
        csv_copy(*args)
    elif cmd == "report":
        report(*args)
    else:
        die(f"unknown subcommand {cmd!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
