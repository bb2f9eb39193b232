#!/usr/bin/env python3
"""bench/run.sh's report: the tables of one run, and --write's block in BENCHMARKS.md.

Usage: bench/report.py RESULTS LOADGEN WRITE BENCHMARKS_MD

RESULTS is run.sh's wrk rows, one line per row and round, tab-separated:
  id, round, req/s, p50 ms, p99 ms, proxy µs/req, authz µs/req, others %, authz conns/1k req
LOADGEN is its direct gRPC rows, likewise:
  id, round, decisions/s, p50 µs, p99 µs, p99.9 µs, server µs/decision, response bytes
WRITE is 1 to also replace the block between the bench/run.sh markers in BENCHMARKS_MD (or
append it when the file has none). The run's description comes from the M_* environment
variables run.sh exports (M_DATE becomes meta["date"], and so on).

The report goes to stdout. Standard library only, so that run.sh needs nothing installed.
"""

import os
import statistics
import sys

BEGIN, END = "<!-- bench/run.sh:begin -->", "<!-- bench/run.sh:end -->"

# The wrk rows in the order of the table, with their number and label.
LABELS = [
    ("envoy-direct", "1", "Envoy direct_response, no auth"),
    ("envoy-proxy", "1b", "Envoy → upstream, no auth"),
    ("envoy-apikey", "2", "Envoy api_key_auth (plaintext key) → upstream"),
    ("envoy-module", "7", "Envoy + keygate module, SHA-256 (Bearer) → upstream"),
    ("envoy-module-argon2", "7a", "Envoy + keygate module, Argon2, verified (x-api-key) → upstream"),
    ("envoy-module-limited", "7b", "Envoy + keygate module, SHA-256, two rate limits never reached → upstream"),
    ("grpc-allow", "3", "Envoy ext_authz gRPC, allow_all → upstream"),
    ("grpc-allow-id", "3'", "Envoy ext_authz gRPC, allow_all with keygate-shaped allow → upstream"),
    ("grpc-sha256", "4", "Envoy ext_authz gRPC, keygate SHA-256 (Bearer) → upstream"),
    ("grpc-argon2", "4a", "Envoy ext_authz gRPC, keygate Argon2, verified (x-api-key) → upstream"),
    ("http-allow", "5a", "Envoy ext_authz HTTP, allow_all → upstream"),
    ("http-sha256", "5", "Envoy ext_authz HTTP, keygate SHA-256 → upstream"),
    ("nginx-static", "6a", "nginx static 200, no auth"),
    ("nginx-proxy", "6a'", "nginx → upstream, no auth"),
    ("nginx-allow", "6b", "nginx auth_request, allow_all → upstream"),
    ("nginx-allow-id", "6b'", "nginx auth_request, allow_all with identity headers → upstream"),
    ("nginx-sha256", "6c", "nginx auth_request, keygate SHA-256 → upstream"),
    ("nginx-file", "8", "nginx static file, no auth"),
    ("nginx-module-file", "8a", "nginx + keygate module, SHA-256 (Bearer), static file"),
    ("nginx-module-file-argon2", "8b", "nginx + keygate module, Argon2, verified (x-api-key), static file"),
    ("nginx-module", "8c", "nginx + keygate module (config/nginx-module.conf), SHA-256 → upstream"),
]

LOADGEN_LABELS = [
    ("loadgen-allow", "allow_all"),
    ("loadgen-allow-id", "allow_all, keygate-shaped allow"),
    ("loadgen-keygate", "keygate SHA-256"),
    ("loadgen-argon2", "keygate Argon2, verified"),
]


def read_table(path):
    """The rows of a TSV file by id, each row its list of fields, in file order."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            table.setdefault(fields[0], []).append(fields)
    return table


def medians(table, first, stop):
    """For each id, the median over its rounds of every column from first to stop - 1."""
    return {
        k: [statistics.median(float(r[i]) for r in rows) for i in range(first, stop)]
        for k, rows in table.items()
    }


def div(x, y):
    return x / y


def sub(x, y):
    return x - y


def per_round(table, a, b, col, op):
    """op(a, b) on column col within each round both ids have, in round order.

    The two rows of a pair ran a few seconds apart, under the same background load, so their
    ratio within a round is steadier than the ratio of their medians. Rounds where b is 0 are
    left out (there is nothing to divide by).
    """
    ra = {f[1]: float(f[col]) for f in table.get(a, [])}
    rb = {f[1]: float(f[col]) for f in table.get(b, [])}
    return [op(ra[k], rb[k]) for k in sorted(ra, key=int) if k in rb and rb[k] > 0]


def at_least(limit, text):
    return text, lambda m: m >= limit


def at_most(limit, text):
    return text, lambda m: m <= limit


def ratio(name, table, a, b, col, op=div, fmt="{:.3f}", target=None):
    """One line of the ratio table, (name, median, each round, target, status), or None when
    no round has both rows. target is (text, goal), goal telling whether the median meets it;
    without one the line is for reference."""
    vals = per_round(table, a, b, col, op)
    if not vals:
        return None
    m = statistics.median(vals)
    if target is None:
        text, status = "—", "(reference)"
    else:
        text, goal = target
        status = "met" if goal(m) else "**missed**"
    return (name, fmt.format(m), ", ".join(fmt.format(v) for v in vals), text, status)


def ratios(rows, lg):
    """The ratio table's lines, from the wrk rows and the direct gRPC rows (read_table's)."""
    out = []
    for key, what in [("grpc-sha256", "SHA-256"), ("grpc-argon2", "Argon2")]:
        out.append(ratio(f"4÷3 Envoy gRPC, keygate {what} ÷ allow_all, req/s",
                         rows, key, "grpc-allow", 2, target=at_least(0.95, "≥ 0.95")))
        out.append(ratio(f"4−3 Envoy gRPC, keygate {what} − allow_all, p99 (ms)",
                         rows, key, "grpc-allow", 4, op=sub, fmt="{:+.2f}",
                         target=at_most(0.2, "≤ +0.2")))
    for key, what in [("grpc-sha256", "SHA-256"), ("grpc-argon2", "Argon2")]:
        out.append(ratio(f"4÷3' Envoy gRPC, keygate {what} ÷ allow_all with keygate-shaped allow, req/s",
                         rows, key, "grpc-allow-id", 2))
    for key, what in [("envoy-module", "SHA-256"), ("envoy-module-argon2", "Argon2, cached")]:
        out.append(ratio(f"7÷2 Envoy + keygate module, {what} ÷ api_key_auth, req/s",
                         rows, key, "envoy-apikey", 2, target=at_least(0.90, "≥ 0.90")))
        out.append(ratio(f"7−2 Envoy + keygate module, {what} − api_key_auth, p99 (ms)",
                         rows, key, "envoy-apikey", 4, op=sub, fmt="{:+.2f}",
                         target=at_most(0.2, "≤ +0.2")))
        out.append(ratio(f"7−2 Envoy + keygate module, {what} − api_key_auth, Envoy's CPU per request (µs)",
                         rows, key, "envoy-apikey", 5, op=sub, fmt="{:+.2f}",
                         target=at_most(1.5, "≤ +1.5")))
    out += [
        ratio("7b÷7 Envoy + keygate module, two never-reached rate limits ÷ none, req/s",
              rows, "envoy-module-limited", "envoy-module", 2, target=at_least(0.97, "≥ 0.97")),
        ratio("7÷1 Envoy + keygate module (SHA-256) ÷ direct_response, req/s",
              rows, "envoy-module", "envoy-direct", 2),
        ratio("7÷4 Envoy + keygate module ÷ Envoy + keygate over gRPC (SHA-256), req/s",
              rows, "envoy-module", "grpc-sha256", 2),
        ratio("3'÷3 Envoy gRPC, keygate-shaped allow ÷ empty allow (both allow_all), req/s",
              rows, "grpc-allow-id", "grpc-allow", 2),
        ratio("4÷3 Envoy gRPC, Envoy's CPU per request, keygate SHA-256 ÷ allow_all",
              rows, "grpc-sha256", "grpc-allow", 5, fmt="{:.2f}"),
        ratio("4÷3 Envoy gRPC, authorization server's CPU per request, keygate SHA-256 ÷ allow_all",
              rows, "grpc-sha256", "grpc-allow", 6, fmt="{:.2f}"),
        ratio("4÷2 Envoy, keygate SHA-256 (gRPC) ÷ api_key_auth, req/s",
              rows, "grpc-sha256", "envoy-apikey", 2),
        ratio("5÷5a Envoy HTTP, keygate ÷ allow_all, req/s", rows, "http-sha256", "http-allow", 2),
        ratio("6c÷6b nginx, keygate ÷ allow_all, req/s", rows, "nginx-sha256", "nginx-allow", 2,
              target=at_least(0.95, "≥ 0.95")),
        ratio("6c÷6b' nginx, keygate ÷ allow_all with identity headers, req/s",
              rows, "nginx-sha256", "nginx-allow-id", 2),
        ratio("6c÷6b nginx's CPU per request, keygate ÷ allow_all",
              rows, "nginx-sha256", "nginx-allow", 5, fmt="{:.2f}"),
        ratio("6c÷6b authorization server's CPU per request, keygate ÷ allow_all",
              rows, "nginx-sha256", "nginx-allow", 6, fmt="{:.2f}"),
    ]
    for key, n, what in [("nginx-module-file", "8a", "SHA-256"),
                         ("nginx-module-file-argon2", "8b", "Argon2, cached")]:
        out.append(ratio(f"{n}÷8 nginx + keygate module, {what} ÷ nginx alone (static file), req/s",
                         rows, key, "nginx-file", 2, target=at_least(0.90, "≥ 0.90")))
        out.append(ratio(f"{n}−8 nginx + keygate module, {what} − nginx alone, p99 (ms)",
                         rows, key, "nginx-file", 4, op=sub, fmt="{:+.2f}",
                         target=at_most(0.2, "≤ +0.2")))
        out.append(ratio(f"{n}−8 nginx + keygate module, {what} − nginx alone, nginx's CPU per request (µs)",
                         rows, key, "nginx-file", 5, op=sub, fmt="{:+.2f}"))
    out += [
        ratio("8c÷6a' nginx + keygate module ÷ nginx alone (→ upstream), req/s",
              rows, "nginx-module", "nginx-proxy", 2),
        ratio("8c÷6c nginx + keygate module ÷ nginx auth_request to keygate (SHA-256), req/s",
              rows, "nginx-module", "nginx-sha256", 2),
        ratio("direct gRPC, keygate SHA-256 ÷ allow_all, decisions/s",
              lg, "loadgen-keygate", "loadgen-allow", 2, target=at_least(0.90, "≥ 0.90")),
        ratio("direct gRPC, keygate Argon2 ÷ allow_all, decisions/s",
              lg, "loadgen-argon2", "loadgen-allow", 2, target=at_least(0.90, "≥ 0.90")),
        ratio("direct gRPC, keygate ÷ allow_all with keygate-shaped allow, decisions/s",
              lg, "loadgen-keygate", "loadgen-allow-id", 2),
        ratio("direct gRPC, keygate ÷ allow_all, server CPU per decision",
              lg, "loadgen-keygate", "loadgen-allow", 6, fmt="{:.2f}"),
        ratio("direct gRPC, keygate ÷ allow_all with keygate-shaped allow, server CPU per decision",
              lg, "loadgen-keygate", "loadgen-allow-id", 6, fmt="{:.2f}"),
        ratio("direct gRPC, keygate Argon2 ÷ keygate SHA-256, server CPU per decision",
              lg, "loadgen-argon2", "loadgen-keygate", 6, fmt="{:.2f}"),
    ]
    return [line for line in out if line is not None]


def report(meta, rows, lg):
    """The report's Markdown (no trailing newline): meta is the run's description (run.sh's
    M_* variables, lowercased, without M_), rows and lg the two tables from read_table."""
    r = medians(rows, 2, 9)  # rps p50 p99 proxy authz others conns
    g = medians(lg, 2, 8)  # rate p50 p99 p999 server bytes
    pinned = meta["pin"] == "1"
    out = []
    w = out.append
    w(f"Run {meta['date']} on {meta['nproc']} cores ({meta['cpu']}), keygate {meta['commit']}; "
      f"Envoy {meta['envoy']}, nginx {meta['nginx']}, wrk {meta['wrk']}.")
    w("")
    w(f"Command: `{meta['cmd']}` — wrk -t1 -c{meta['conns']} -d{meta['secs']}s --latency after "
      f"{meta['warmup']} s of warm-up, median of {meta['rounds']} round(s); "
      + (f"proxy pinned to CPU {meta['cpu_proxy']}, wrk, upstream and authorization server to CPU "
         f"{meta['cpu_others']}" if pinned else "no pinning")
      + f". 1-minute load average before the run: {meta['load']}.")
    w("")
    others = max(v[5] for v in r.values()) if r else 0
    if others >= 5:
        w(f"**Busy machine**: other processes used up to {others:.0f}% of all cores during a row "
          "(column *others*); compare rows by their ratios, not their absolute figures.")
        w("")
    w("| # | configuration | req/s | p50 ms | p99 ms | proxy µs/req | authz µs/req | authz conns/1k req | others % |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, n, label in LABELS:
        if key in r:
            v = r[key]
            # Rows without an authorization server measured none.
            authz = f"{v[4]:.1f}" if v[4] > 0 else "—"
            conns = f"{v[6]:.1f}" if v[4] > 0 else "—"
            w(f"| {n} | {label} | {v[0]:.0f} | {v[1]:.3f} | {v[2]:.3f} | {v[3]:.1f} | {authz} | {conns} | {v[5]:.0f} |")
    w("")
    direct = (f"Direct gRPC Check (examples/loadgen.rs, {meta['lg_streams']} streams over "
              f"{meta['lg_conns']} HTTP/2 connections, {meta['secs']} s")
    if pinned:
        w(f"{direct}; server pinned to CPU {meta['cpu_others']}, loadgen to CPU {meta['cpu_proxy']}):")
    else:
        w(f"{direct}):")
    w("")
    w("| server | decisions/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/decision | response bytes |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for key, label in LOADGEN_LABELS:
        if key in g:
            v = g[key]
            w(f"| {label} | {v[0]:.0f} | {v[1]:.1f} | {v[2]:.1f} | {v[3]:.1f} | {v[4]:.1f} | {v[5]:.0f} |")
    w("")
    w("Ratios between the rows of a pair, taken within each round and then the median over rounds:")
    w("")
    w("| ratio | median | each round | target | |")
    w("|---|---:|---|---|---|")
    for name, value, each, goal, status in ratios(rows, lg):
        w(f"| {name} | {value} | {each} | {goal} | {status} |")
    return "\n".join(out)


def replace_block(md, text):
    """md with text between the markers: in place of the block when md has one, else appended
    under a heading of its own. Everything outside the block stays as it was."""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in md and END in md and md.index(BEGIN) < md.index(END):
        i, j = md.index(BEGIN), md.index(END) + len(END)
        return md[:i] + block + md[j:]
    return md.rstrip("\n") + "\n\n## Against the proxies' own baselines (bench/run.sh)\n\n" + block + "\n"


def write_block(path, text):
    """replace_block on the file at path (started as "# Benchmarks" when there is none)."""
    try:
        with open(path, encoding="utf-8") as f:
            md = f.read()
    except FileNotFoundError:
        md = "# Benchmarks\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(replace_block(md, text))


def main(argv=None, environ=None):
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    results, loadgen, write, md_path = argv[0], argv[1], argv[2] == "1", argv[3]
    meta = {k[2:].lower(): v for k, v in environ.items() if k.startswith("M_")}
    text = report(meta, read_table(results), read_table(loadgen))
    print()
    print(text)
    if write:
        write_block(md_path, text)
        print(f"\nwrote the table into {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
