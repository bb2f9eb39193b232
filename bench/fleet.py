#!/usr/bin/env python3
"""The fleet on one machine: a Redis primary and one replica, N real keygate sidecars (release
build, separate processes) following the replica, and what a fleet costs and how fast it
converges: revocation latency until the *last* sidecar refuses the key, and the same for an
update in place (a key's scopes narrowed) (p50, p99, max over rounds), and Redis's commands per second and CPU, idle and while every sidecar serves
allowed requests, per instance.

Run through bench/fleet.sh, which installs what it needs and builds keygate:
    bench/fleet.sh [INSTANCES] [ROUNDS]        default 100 instances, 20 rounds
    FLEET_ACTIVE_KEYS [200]                    keys the load spreads over
    FLEET_TABLE_KEYS [0]                       filler keys in the table: a reload storm of
                                               large tables (the records are written as an
                                               older keygate left them; the first sidecar
                                               builds the snapshot every load then reads)
"""

import asyncio
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "keygate")


# Keys the load spreads over, every sidecar using all of them.
ACTIVE = int(os.environ.get("FLEET_ACTIVE_KEYS", "200"))
# Filler records in the table every sidecar loads (0: only the run's keys).
TABLE = int(os.environ.get("FLEET_TABLE_KEYS", "0"))


def fill(port, n):
    """n SHA-256 key records written straight into Redis as keygate stores them, modelled on
    the first key's record, through redis-cli --pipe."""
    template = json.loads(redis_cli(port, "hget", "{keygate}:keys",
                                    redis_cli(port, "hkeys", "{keygate}:keys").split()[0]))
    out = bytearray()

    def resp(*args):
        out.extend(f"*{len(args)}\r\n".encode())
        for a in args:
            b = a.encode()
            out.extend(f"${len(b)}\r\n".encode() + b + b"\r\n")

    for start in range(0, n, 1000):
        args = ["HSET", "{keygate}:keys"]
        for i in range(start, min(n, start + 1000)):
            rec = dict(template)
            rec["id"] = f"filler{i:07d}"
            rec["prefix"] = "tk_live_" + rec["id"]
            rec["hash"] = {"sha256": hashlib.sha256(rec["id"].encode()).hexdigest()}
            args += [rec["id"], json.dumps(rec, separators=(",", ":"))]
        resp(*args)
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=bytes(out),
                   capture_output=True, check=True)


async def until_ready(ports, deadline=600.0):
    """Seconds until every sidecar's /readyz answers 200."""
    start = time.monotonic()

    async def one(p):
        while True:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", p)
                w.write(b"GET /readyz HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
                await w.drain()
                line = await r.readline()
                w.close()
                if b" 200 " in line:
                    return
            except OSError:
                pass
            if time.monotonic() - start > deadline:
                raise TimeoutError("a sidecar was not ready in time")
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(p) for p in ports))
    return time.monotonic() - start


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def redis_info(port):
    out = {}
    for line in redis_cli(port, "info").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def config(work, name, primary, replica, http):
    text = open(os.path.join(ROOT, "config/keygate.yaml")).read()
    text = text.replace(
        "  backend: file             # embedded default: one local file\n  path: data/keygate.json\n",
        f"  backend: redis\n  url: redis://127.0.0.1:{primary}/0\n  read_url: redis://127.0.0.1:{replica}/0\n")
    text = text.replace("127.0.0.1:9001", "127.0.0.1:0").replace("127.0.0.1:9002", f"127.0.0.1:{http}")
    text = text.replace("127.0.0.1:9003", "127.0.0.1:0")
    path = os.path.join(work, f"{name}.yaml")
    open(path, "w").write(text)
    return path


class Conn:
    """A kept-alive connection to one sidecar, opened again when the sidecar closed it (an idle
    keep-alive connection is closed after limits.header_read_timeout_seconds)."""

    def __init__(self, port):
        self.port = port
        self.rw = None

    async def status(self, key, uri="/v1/x"):
        """One /auth request: its status."""
        for attempt in range(2):
            try:
                if self.rw is None:
                    self.rw = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = self.rw
                writer.write((f"GET /auth HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {key}\r\n"
                              f"X-Original-URI: {uri}\r\n\r\n").encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                return int(head.split(b" ", 2)[1])
            except (OSError, asyncio.IncompleteReadError):
                self.rw = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


async def status(conn, key, uri="/v1/x"):
    return await conn.status(key, uri)


async def until_all(conns, key, want, deadline=30.0, uri="/v1/x"):
    """Polls every sidecar until each answers `want`; seconds until the last did."""
    start = time.monotonic()

    async def one(conn):
        while True:
            if await status(conn, key, uri) == want:
                return time.monotonic() - start
            if time.monotonic() - start > deadline:
                raise TimeoutError(f"a sidecar did not answer {want} within {deadline} s")
            await asyncio.sleep(0.001)

    return max(await asyncio.gather(*(one(c) for c in conns)))


def cli(cfg, *args):
    return subprocess.run([BIN, "--config", cfg, *args], capture_output=True, text=True,
                          check=True, env={**os.environ, "KEYGATE_LOG": "warn"}).stdout


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


async def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    work = tempfile.mkdtemp(prefix="keygate-fleet.")
    procs = []
    try:
        primary, replica = free_port(), free_port()
        for port, extra in [(primary, []), (replica, ["--replicaof", "127.0.0.1", str(primary)])]:
            procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no", "--maxclients", "20000",
                                           "--dir", work, *extra], stdout=subprocess.DEVNULL))
        for port in (primary, replica):
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
                time.sleep(0.05)
        admin_cfg = config(work, "admin", primary, replica, free_port())
        key = json.loads(cli(admin_cfg, "keys", "create", "--account", "fleet", "--scheme", "live"))["key"]
        storm = ""
        if TABLE:
            fill(primary, TABLE)
            # Records without a snapshot in step: the layout an older keygate leaves.
            redis_cli(primary, "del", "{keygate}:snap_rev")
            keys = redis_cli(primary, "hlen", "{keygate}:keys")
            while redis_cli(replica, "hlen", "{keygate}:keys") != keys:
                time.sleep(0.1)

            def alone_once():
                p = free_port()
                proc = subprocess.Popen([BIN, "--config", config(work, "alone", primary, replica, p), "serve"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "KEYGATE_LOG": "warn"})
                return p, proc
            # The first sidecar loads the records and builds the snapshot.
            p, alone = alone_once()
            from_records = await until_ready([p])
            deadline = time.monotonic() + 600
            while redis_cli(replica, "get", "{keygate}:snap_rev") != redis_cli(replica, "get", "{keygate}:rev"):
                if time.monotonic() > deadline:
                    sys.exit("the snapshot was not built")
                time.sleep(0.1)
            alone.terminate()
            alone.wait()
            # One sidecar alone on the snapshot: the baseline of a storm.
            p, alone = alone_once()
            one_load = await until_ready([p])
            alone.terminate()
            alone.wait()
            storm = (f"one sidecar alone loads {keys} keys in {one_load:.1f} s from the snapshot "
                     f"({from_records:.1f} s from the records); ")
        ports = []
        started = time.monotonic()
        for i in range(n):
            p = free_port()
            ports.append(p)
            cfg = config(work, f"k{i}", primary, replica, p)
            procs.append(subprocess.Popen([BIN, "--config", cfg, "serve"], stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(work, f"k{i}.log"), "w"),
                                          env={**os.environ, "KEYGATE_LOG": "warn"}))
        conns = [Conn(p) for p in ports]
        for c in conns:
            while True:
                try:
                    if await c.status(key) == 200:
                        break
                except (OSError, asyncio.IncompleteReadError):
                    pass
                await asyncio.sleep(0.05)
        await until_ready(ports)
        ready = time.monotonic() - started
        failures = sum(open(os.path.join(work, f"k{i}.log")).read().count("unavailable") for i in range(n))
        resumed = sum(open(os.path.join(work, f"k{i}.log")).read().count("resuming") for i in range(n))
        print(f"{storm}{n} sidecars started at once all ready in {ready:.1f} s; "
              f"{failures} 'redis unavailable' and {resumed} resumed batches in their logs")

        # Idle: what the fleet costs Redis when nothing happens.
        def sample(secs):
            a = [redis_info(p) for p in (primary, replica)]
            time.sleep(secs)
            b = [redis_info(p) for p in (primary, replica)]
            cmds = sum(int(y["total_commands_processed"]) - int(x["total_commands_processed"]) for x, y in zip(a, b))
            cpu = sum(float(y["used_cpu_sys"]) + float(y["used_cpu_user"]) - float(x["used_cpu_sys"]) - float(x["used_cpu_user"]) for x, y in zip(a, b))
            return cmds / secs, cpu / secs * 100
        idle_cmds, idle_cpu = sample(10)

        # Revocations: a new key, allowed everywhere, revoked; until the last sidecar refuses.
        latencies = []
        for _ in range(rounds):
            made = json.loads(cli(admin_cfg, "keys", "create", "--account", "fleet", "--scheme", "live"))
            await until_all(conns, made["key"], 200)
            # From the revocation's start (the CLI's own start-up included) to the last refusal.
            t0 = time.monotonic()
            cli(admin_cfg, "keys", "revoke", made["id"])
            spent = time.monotonic() - t0
            latencies.append(await until_all(conns, made["key"], 401) + spent)

        # Updates in place: a key's scopes narrowed (`keys update --scope`), until the last
        # sidecar refuses it a route outside them.
        updates = []
        for _ in range(rounds):
            made = json.loads(cli(admin_cfg, "keys", "create", "--account", "fleet", "--scheme", "live"))
            await until_all(conns, made["key"], 200, uri="/v1/tokens")
            t0 = time.monotonic()
            cli(admin_cfg, "keys", "update", made["id"], "--scope", "usage:read")
            spent = time.monotonic() - t0
            updates.append(await until_all(conns, made["key"], 403, uri="/v1/tokens") + spent)

        # Under load: every sidecar allowing requests of ACTIVE keys in turn for 10 s.
        active = [key] + [json.loads(cli(admin_cfg, "keys", "create", "--account", "fleet",
                                          "--scheme", "live"))["key"] for _ in range(ACTIVE - 1)]
        for k in active:
            await until_all(conns, k, 200)
        stop = time.monotonic() + 10
        counted = [0]

        async def load(conn):
            i = conn.port
            while time.monotonic() < stop:
                await status(conn, active[i % len(active)])
                i += 1
                counted[0] += 1
        a = [redis_info(p) for p in (primary, replica)]
        t = time.monotonic()
        await asyncio.gather(*(load(c) for c in conns))
        secs = time.monotonic() - t
        b = [redis_info(p) for p in (primary, replica)]
        load_cmds = sum(int(y["total_commands_processed"]) - int(x["total_commands_processed"]) for x, y in zip(a, b)) / secs
        load_cpu = sum(float(y["used_cpu_sys"]) + float(y["used_cpu_user"]) - float(x["used_cpu_sys"]) - float(x["used_cpu_user"]) for x, y in zip(a, b)) / secs * 100

        ms = [x * 1000 for x in latencies]
        ums = [x * 1000 for x in updates]
        print(f"| instances | revocation to the last, p50 / p99 / max (ms) | update to the last, p50 / p99 / max (ms) | "
              f"Redis idle: commands/s per instance, CPU % | "
              f"Redis under load ({counted[0] / secs:.0f} allowed/s over {ACTIVE} keys): commands/s per instance, CPU % |")
        print("|---:|---|---|---|---|")
        print(f"| {n} | {statistics.median(ms):.1f} / {pct(ms, 0.99):.1f} / {max(ms):.1f} | "
              f"{statistics.median(ums):.1f} / {pct(ums, 0.99):.1f} / {max(ums):.1f} | "
              f"{idle_cmds / n:.2f}, {idle_cpu:.1f} % | {load_cmds / n:.2f}, {load_cpu:.1f} % |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


asyncio.run(main())
