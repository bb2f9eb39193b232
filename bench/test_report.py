"""Unit tests of bench/report.py on small made-up runs (no benchmark needed):

    python3 -m unittest discover -s bench -p 'test_*.py'
"""

import contextlib
import io
import os
import tempfile
import unittest

import report

META = {
    "date": "2026-01-02 03:04 UTC", "nproc": "2", "cpu": "Test CPU", "commit": "abc1234",
    "envoy": "1.40.0", "nginx": "1.22.1", "wrk": "4.1.0", "cmd": "bench/run.sh", "load": "0.10",
    "secs": "10", "conns": "32", "warmup": "2", "rounds": "3", "pin": "1", "cpu_proxy": "0",
    "cpu_others": "1", "lg_streams": "64", "lg_conns": "4",
}


def wrk_row(id, round, rps, p50=1.0, p99=2.0, proxy=50.0, authz=0.0, others=0.0, conns=0.0):
    """A results.tsv line as run.sh writes it, split into fields."""
    return [id, str(round), f"{rps}", f"{p50:.3f}", f"{p99:.3f}", f"{proxy:.2f}", f"{authz:.2f}",
            f"{others:.1f}", f"{conns:.2f}"]


def lg_row(id, round, rate, server=25.0, size=183):
    """A loadgen.tsv line as run.sh writes it, split into fields."""
    return [id, str(round), f"{rate}", "1900.0", "3500.0", "7000.0", f"{server:.2f}", str(size)]


def table(*rows):
    t = {}
    for r in rows:
        t.setdefault(r[0], []).append(r)
    return t


class Statistics(unittest.TestCase):
    def test_read_table_groups_rows_by_id_in_file_order(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "results.tsv")
            with open(path, "w") as f:
                f.write("a\t1\t10\nb\t1\t20\na\t2\t30\n")
            self.assertEqual(report.read_table(path),
                             {"a": [["a", "1", "10"], ["a", "2", "30"]], "b": [["b", "1", "20"]]})

    def test_medians_per_column(self):
        t = table(wrk_row("x", 1, 100, p50=1), wrk_row("x", 2, 300, p50=5), wrk_row("x", 3, 200, p50=3),
                  wrk_row("y", 1, 10), wrk_row("y", 2, 20))
        m = report.medians(t, 2, 4)
        self.assertEqual(m["x"], [200, 3])
        self.assertEqual(m["y"], [15, 1])  # an even number of rounds: the middle two's mean

    def test_per_round_pairs_rounds_in_numeric_order(self):
        a = [wrk_row("a", r, 10 * r) for r in (10, 2, 1)]
        b = [wrk_row("b", r, 5 * r) for r in (1, 2, 10)]
        self.assertEqual(report.per_round(table(*a, *b), "a", "b", 2, report.div), [2.0, 2.0, 2.0])
        self.assertEqual(report.per_round(table(*a, *b), "a", "b", 2, report.sub), [5.0, 10.0, 50.0])

    def test_per_round_skips_rounds_missing_or_zero(self):
        t = table(wrk_row("a", 1, 10), wrk_row("a", 2, 10), wrk_row("a", 3, 10),
                  wrk_row("b", 1, 5), wrk_row("b", 3, 0))
        self.assertEqual(report.per_round(t, "a", "b", 2, report.div), [2.0])
        self.assertEqual(report.per_round(t, "a", "missing", 2, report.div), [])

    def test_ratio_is_the_median_of_per_round_ratios(self):
        # Medians of the rows would give 200/200 = 1; the rounds' ratios are 0.5, 1.2 and 2.
        t = table(wrk_row("a", 1, 100), wrk_row("a", 2, 240), wrk_row("a", 3, 200),
                  wrk_row("b", 1, 200), wrk_row("b", 2, 200), wrk_row("b", 3, 100))
        self.assertEqual(report.ratio("a÷b", t, "a", "b", 2),
                         ("a÷b", "1.200", "0.500, 1.200, 2.000", "—", "(reference)"))

    def test_ratio_without_common_rounds_is_none(self):
        t = table(wrk_row("a", 1, 100), wrk_row("b", 2, 100))
        self.assertIsNone(report.ratio("a÷b", t, "a", "b", 2))


class Targets(unittest.TestCase):
    def rows(self, a, b):
        return table(*[wrk_row("a", i + 1, v) for i, v in enumerate(a)],
                     *[wrk_row("b", i + 1, v) for i, v in enumerate(b)])

    def test_met(self):
        t = self.rows([96, 90, 99], [100, 100, 100])
        line = report.ratio("r", t, "a", "b", 2, target=report.at_least(0.95, "≥ 0.95"))
        self.assertEqual(line, ("r", "0.960", "0.960, 0.900, 0.990", "≥ 0.95", "met"))

    def test_met_at_the_limit(self):
        t = self.rows([95], [100])
        line = report.ratio("r", t, "a", "b", 2, target=report.at_least(0.95, "≥ 0.95"))
        self.assertEqual(line[4], "met")

    def test_missed(self):
        t = self.rows([94, 99, 90], [100, 100, 100])
        line = report.ratio("r", t, "a", "b", 2, target=report.at_least(0.95, "≥ 0.95"))
        self.assertEqual(line, ("r", "0.940", "0.940, 0.990, 0.900", "≥ 0.95", "**missed**"))

    def test_at_most_on_a_difference(self):
        t = table(wrk_row("a", 1, 1, p99=2.1), wrk_row("b", 1, 1, p99=2.0),
                  wrk_row("c", 1, 1, p99=2.5))
        goal = report.at_most(0.2, "≤ +0.2")
        met = report.ratio("a−b", t, "a", "b", 4, op=report.sub, fmt="{:+.2f}", target=goal)
        missed = report.ratio("c−b", t, "c", "b", 4, op=report.sub, fmt="{:+.2f}", target=goal)
        self.assertEqual(met, ("a−b", "+0.10", "+0.10", "≤ +0.2", "met"))
        self.assertEqual(missed, ("c−b", "+0.50", "+0.50", "≤ +0.2", "**missed**"))

    def test_reference(self):
        t = self.rows([50], [100])
        self.assertEqual(report.ratio("r", t, "a", "b", 2, fmt="{:.2f}"),
                         ("r", "0.50", "0.50", "—", "(reference)"))

    def test_run_targets(self):
        rows = table(wrk_row("grpc-allow", 1, 1000, p99=3.0), wrk_row("grpc-sha256", 1, 960, p99=3.5),
                     wrk_row("nginx-allow", 1, 1000), wrk_row("nginx-sha256", 1, 900))
        lg = table(lg_row("loadgen-allow", 1, 1000), lg_row("loadgen-keygate", 1, 950),
                   lg_row("loadgen-argon2", 1, 850))
        got = {name: (target, status) for name, _, _, target, status in report.ratios(rows, lg)}
        self.assertEqual(got, {
            "4÷3 Envoy gRPC, keygate SHA-256 ÷ allow_all, req/s": ("≥ 0.95", "met"),
            "4−3 Envoy gRPC, keygate SHA-256 − allow_all, p99 (ms)": ("≤ +0.2", "**missed**"),
            "4÷3 Envoy gRPC, Envoy's CPU per request, keygate SHA-256 ÷ allow_all": ("—", "(reference)"),
            "6c÷6b nginx, keygate ÷ allow_all, req/s": ("≥ 0.95", "**missed**"),
            "6c÷6b nginx's CPU per request, keygate ÷ allow_all": ("—", "(reference)"),
            "direct gRPC, keygate SHA-256 ÷ allow_all, decisions/s": ("≥ 0.90", "met"),
            "direct gRPC, keygate Argon2 ÷ allow_all, decisions/s": ("≥ 0.90", "**missed**"),
            "direct gRPC, keygate ÷ allow_all, server CPU per decision": ("—", "(reference)"),
            "direct gRPC, keygate Argon2 ÷ keygate SHA-256, server CPU per decision": ("—", "(reference)"),
        })
        # The authorization servers' CPU ratios need a nonzero allow_all figure to divide by.
        self.assertNotIn("4÷3 Envoy gRPC, authorization server's CPU per request, keygate SHA-256 ÷ allow_all", got)


    def test_nginx_module_targets(self):
        rows = table(wrk_row("nginx-file", 1, 1000, p99=1.0, proxy=10.0),
                     wrk_row("nginx-module-file", 1, 950, p99=1.1, proxy=11.0),
                     wrk_row("nginx-module-file-argon2", 1, 850, p99=1.5, proxy=12.0))
        got = {name: (target, status) for name, _, _, target, status in report.ratios(rows, {})}
        self.assertEqual(got, {
            "8a÷8 nginx + keygate module, SHA-256 ÷ nginx alone (static file), req/s": ("≥ 0.90", "met"),
            "8a−8 nginx + keygate module, SHA-256 − nginx alone, p99 (ms)": ("≤ +0.2", "met"),
            "8a−8 nginx + keygate module, SHA-256 − nginx alone, nginx's CPU per request (µs)": ("—", "(reference)"),
            "8b÷8 nginx + keygate module, Argon2, cached ÷ nginx alone (static file), req/s": ("≥ 0.90", "**missed**"),
            "8b−8 nginx + keygate module, Argon2, cached − nginx alone, p99 (ms)": ("≤ +0.2", "**missed**"),
            "8b−8 nginx + keygate module, Argon2, cached − nginx alone, nginx's CPU per request (µs)": ("—", "(reference)"),
        })


class Report(unittest.TestCase):
    rows = table(wrk_row("envoy-direct", 1, 30000.4, p50=0.8125, p99=3.17, proxy=27.5),
                 wrk_row("grpc-allow", 1, 7380, authz=27.9, conns=0.04, others=1.2),
                 wrk_row("grpc-sha256", 1, 7529, authz=31.1))
    lg = table(lg_row("loadgen-allow", 1, 32601, size=2))

    def test_tables(self):
        text = report.report(META, self.rows, self.lg)
        self.assertEqual(text.splitlines()[:16], [
            "Run 2026-01-02 03:04 UTC on 2 cores (Test CPU), keygate abc1234; Envoy 1.40.0, nginx 1.22.1, wrk 4.1.0.",
            "",
            "Command: `bench/run.sh` — wrk -t1 -c32 -d10s --latency after 2 s of warm-up, median of 3 round(s); "
            "proxy pinned to CPU 0, wrk, upstream and authorization server to CPU 1. "
            "1-minute load average before the run: 0.10.",
            "",
            "| # | configuration | req/s | p50 ms | p99 ms | proxy µs/req | authz µs/req | authz conns/1k req | others % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            "| 1 | Envoy direct_response, no auth | 30000 | 0.812 | 3.170 | 27.5 | — | — | 0 |",
            "| 3 | Envoy ext_authz gRPC, allow_all → upstream | 7380 | 1.000 | 2.000 | 50.0 | 27.9 | 0.0 | 1 |",
            "| 4 | Envoy ext_authz gRPC, keygate SHA-256 (Bearer) → upstream | 7529 | 1.000 | 2.000 | 50.0 | 31.1 | 0.0 | 0 |",
            "",
            "Direct gRPC Check (examples/loadgen.rs, 64 streams over 4 HTTP/2 connections, 10 s; "
            "server pinned to CPU 1, loadgen to CPU 0):",
            "",
            "| server | decisions/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/decision | response bytes |",
            "|---|---:|---:|---:|---:|---:|---:|",
            "| allow_all | 32601 | 1900.0 | 3500.0 | 7000.0 | 25.0 | 2 |",
            "",
        ])
        self.assertTrue(text.endswith(
            "| 4÷3 Envoy gRPC, authorization server's CPU per request, keygate SHA-256 ÷ allow_all "
            "| 1.11 | 1.11 | — | (reference) |"))
        self.assertFalse(text.endswith("\n"))

    def test_busy_machine_and_no_pinning(self):
        rows = table(wrk_row("envoy-direct", 1, 30000, others=5.0))
        text = report.report({**META, "pin": "0"}, rows, {})
        self.assertIn("\n**Busy machine**: other processes used up to 5% of all cores during a row", text)
        self.assertIn("median of 3 round(s); no pinning. 1-minute", text)
        self.assertIn("\nDirect gRPC Check (examples/loadgen.rs, 64 streams over 4 HTTP/2 connections, 10 s):\n", text)
        quiet = report.report(META, table(wrk_row("envoy-direct", 1, 30000, others=4.9)), {})
        self.assertNotIn("Busy machine", quiet)


class Block(unittest.TestCase):
    begin, end = report.BEGIN, report.END

    def test_replaced_when_present(self):
        md = f"# B\n\nbefore\n\n{self.begin}\nold\nlines\n{self.end}\n\nafter\n{self.begin}x"
        self.assertEqual(report.replace_block(md, "new\ntable"),
                         f"# B\n\nbefore\n\n{self.begin}\nnew\ntable\n{self.end}\n\nafter\n{self.begin}x")

    def test_appended_when_missing(self):
        heading = "\n\n## Against the proxies' own baselines (bench/run.sh)\n\n"
        self.assertEqual(report.replace_block("# B\n\ntext\n\n\n", "new"),
                         f"# B\n\ntext{heading}{self.begin}\nnew\n{self.end}\n")
        # An end marker before the begin marker is no block either.
        md = f"x\n{self.end}\n{self.begin}\n"
        self.assertEqual(report.replace_block(md, "new"),
                         f"x\n{self.end}\n{self.begin}{heading}{self.begin}\nnew\n{self.end}\n")

    def test_write_block(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "BENCHMARKS.md")
            report.write_block(path, "one")
            with open(path, encoding="utf-8") as f:
                first = f.read()
            self.assertEqual(first, "# Benchmarks\n\n## Against the proxies' own baselines (bench/run.sh)"
                                    f"\n\n{self.begin}\none\n{self.end}\n")
            report.write_block(path, "two")
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), first.replace("\none\n", "\ntwo\n"))


class Main(unittest.TestCase):
    def test_prints_the_report_and_writes_the_block(self):
        with tempfile.TemporaryDirectory() as d:
            results, loadgen, md = (os.path.join(d, n) for n in ("r.tsv", "l.tsv", "BENCHMARKS.md"))
            with open(results, "w") as f:
                f.write("\t".join(wrk_row("nginx-allow", 1, 1000, authz=10)) + "\n")
                f.write("\t".join(wrk_row("nginx-sha256", 1, 960, authz=12)) + "\n")
            with open(loadgen, "w") as f:
                f.write("\t".join(lg_row("loadgen-allow", 1, 1000)) + "\n")
            with open(md, "w", encoding="utf-8") as f:
                f.write(f"# B\n{report.BEGIN}\nold\n{report.END}\nrest\n")
            environ = {f"M_{k.upper()}": v for k, v in META.items()}
            environ["HOME"] = "/nowhere"  # not M_: not part of the report
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                report.main([results, loadgen, "1", md], environ)
            text = report.report(META, report.read_table(results), report.read_table(loadgen))
            self.assertEqual(out.getvalue(), f"\n{text}\n")
            self.assertEqual(err.getvalue(), f"\nwrote the table into {md}\n")
            self.assertIn("| 6c÷6b nginx, keygate ÷ allow_all, req/s | 0.960 | 0.960 | ≥ 0.95 | met |", text)
            with open(md, encoding="utf-8") as f:
                self.assertEqual(f.read(), f"# B\n{report.BEGIN}\n{text}\n{report.END}\nrest\n")

            # WRITE 0 leaves the file alone.
            with contextlib.redirect_stdout(io.StringIO()):
                report.main([results, loadgen, "0", os.path.join(d, "other.md")], environ)
            self.assertFalse(os.path.exists(os.path.join(d, "other.md")))


if __name__ == "__main__":
    unittest.main()
