#!/usr/bin/env python3
"""Bulk import rate: `keygate keys import --file` (release build) of N JSON lines, one SHA-256
digest each over 100 accounts, into a fresh redis-server and into a fresh file store; then the
same file again, which skips every line. Times are of the whole command (its start, the file's
parse and checks, the writes); rates are lines per second.

Run through bench/import.sh, which installs redis-server and builds keygate:
    bench/import.sh [LINES...]        default 100000
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "keygate")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(work, store):
    text = open(os.path.join(ROOT, "config/keygate.yaml")).read()
    old = "  backend: file             # embedded default: one local file\n  path: data/keygate.json\n"
    new = f"  backend: file\n  path: {work}/keygate.json\n"
    if store != "file":
        new = f"  backend: redis\n  url: {store}\n"
    text = text.replace(old, new)
    path = os.path.join(work, "keygate.yaml")
    open(path, "w").write(text)
    return path


def lines(n, path):
    with open(path, "w") as f:
        for i in range(n):
            digest = hashlib.sha256(f"tk_live_imported-{i:09d}".encode()).hexdigest()
            f.write(json.dumps({"account": f"acct-{i % 100}", "scheme": "live", "sha256": digest}) + "\n")


def run(cfg, path):
    t = time.monotonic()
    out = subprocess.run([BIN, "--config", cfg, "keys", "import", "--file", path],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "KEYGATE_LOG": "warn"}).stdout
    return time.monotonic() - t, json.loads(out)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [100_000]
    print("| store | lines | import: seconds, lines/s | again (all skipped): seconds, lines/s |")
    print("|---|---:|---:|---:|")
    for n in sizes:
        for store in ("redis", "file"):
            work = tempfile.mkdtemp(prefix="keygate-import.")
            redis = None
            url = "file"
            if store == "redis":
                port = free_port()
                redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", work],
                                         stdout=subprocess.DEVNULL)
                while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
                    time.sleep(0.05)
                url = f"redis://127.0.0.1:{port}/0"
            try:
                cfg = config(work, url)
                path = os.path.join(work, "keys.jsonl")
                lines(n, path)
                t1, r1 = run(cfg, path)
                assert r1["imported"] == n and not r1["refused"], r1
                t2, r2 = run(cfg, path)
                assert r2["skipped"] == n and r2["imported"] == 0, r2
                print(f"| {store} | {n} | {t1:.2f} s, {n / t1:,.0f} | {t2:.2f} s, {n / t2:,.0f} |")
            finally:
                if redis:
                    redis.terminate()
                    redis.wait()


main()
