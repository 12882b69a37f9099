#!/usr/bin/env python3
"""PiCloud's benchmark: PiCloud and its ceiling (a bare axum server) under the same load, in one run.

    python3 bench/bench.py                 # release build, SQLite, 3 interleaved rounds of 10 s
    python3 bench/bench.py --postgres URL  # also PiCloud on PostgreSQL (a database it may fill)
    python3 bench/bench.py --smoke         # debug build, one 1 s round: proves the harness works

It builds the binaries, starts `picloud serve` on a fresh data directory, creates each workload's
app, script and route through the admin API, drives load with wrk at 1 and 32 connections, and
prints one table: req/s (median and min-max over rounds), the ratio to the bare server, p50/p99
latency as wrk reports them, errors, server CPU microseconds per request and RSS.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-password"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name -> (script source, route path, request path below the app, dispatch mode)
WORKLOADS = {
    "hello": ('#{ hello: "world", n: 1 }', "/", "/", "sync"),
    "params": (
        "#{ user: ctx.request.params.user, item: ctx.request.params.item, "
        "q: ctx.request.query.q, page: ctx.request.query.page }",
        "/users/{user}/items/{item}",
        "/users/ada/items/42?q=lamps&page=2",
        "sync",
    ),
    "compute": (
        'let s = ""; let total = 0;\n'
        "for i in 0..1000 { total += i * 2; if i % 100 == 0 { s += `${i},`; } }\n"
        "#{ total: total, s: s }",
        "/",
        "/",
        "sync",
    ),
    # One durable KV read and one durable KV write per request, over 1,000 keys.
    "kv": (
        'let c = kv::collection("bench"); let k = "k" + random::int(0, 999);\n'
        "let n = c.get(k); c.set(k, if n == () { 1 } else { n + 1 }); #{ key: k }",
        "/",
        "/",
        "sync",
    ),
    # Accepted/s of an async route: each 202 is a durably committed outbox row.
    "async": ("()", "/", "/", "async"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def proc_stat(pid):
    """(cpu seconds so far, rss KiB, peak rss KiB)"""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss, hwm


def wait_healthy(url, proc, timeout=30.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.005)
    sys.exit(f"{url} was not healthy within {timeout} s")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base: str
    startup_s: float = 0.0
    idle_rss_kib: int = 0
    token: str = ""
    urls: dict = field(default_factory=dict)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_picloud(binary, name, env_extra):
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="picloud-bench-")
    env = dict(os.environ)
    env.update(
        PICLOUD_ADDR=f"127.0.0.1:{port}",
        PICLOUD_DATA_DIR=data_dir,
        PICLOUD_ADMIN_PASSWORD=PASSWORD,
        PICLOUD_LOG="warn",
    )
    env.update(env_extra)
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    server = Server(name, proc, base)
    server.startup_s = wait_healthy(f"{base}/healthz", proc)
    time.sleep(1.0)
    server.idle_rss_kib = proc_stat(proc.pid)[1]
    server.token = http("POST", f"{base}/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["token"]
    for workload, (source, route, request_path, mode) in WORKLOADS.items():
        slug = f"bench-{workload}"
        app = http("POST", f"{base}/api/v1/admin/apps", {"slug": slug, "name": slug}, server.token)
        script = http(
            "POST",
            f"{base}/api/v1/admin/apps/{app['id']}/scripts",
            {"name": workload, "kind": "endpoint", "source": source},
            server.token,
        )
        http(
            "POST",
            f"{base}/api/v1/admin/scripts/{script['id']}/routes",
            {"method": "GET", "path": route, "dispatch_mode": mode},
            server.token,
        )
        server.urls[workload] = f"{base}/{slug}{request_path}"
        with urllib.request.urlopen(server.urls[workload], timeout=10) as resp:
            expected = 202 if mode == "async" else 200
            assert resp.status == expected, f"{workload} answered {resp.status}"
    return server


def start_bare(binary):
    port = free_port()
    proc = subprocess.Popen([binary, f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    server = Server("bare axum", proc, base)
    server.startup_s = wait_healthy(f"{base}/", proc)
    time.sleep(0.5)
    server.idle_rss_kib = proc_stat(proc.pid)[1]
    server.urls["hello"] = f"{base}/"
    return server


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url, connections, seconds):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, requests, p50, p99, errors


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: install Debian's 'wrk' package")
    print("installing wrk from Debian's packages…", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def fmt_range(values, fmt="{:.0f}"):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="debug build, one round of 1 s per workload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--postgres", metavar="URL", help="also run PiCloud on this PostgreSQL database")
    parser.add_argument("--write-results", action="store_true", help="write the table to bench/RESULTS.md")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 1

    ensure_wrk()
    profile = "dev" if args.smoke else "release"
    print(f"building ({profile})…", file=sys.stderr)
    subprocess.run(
        ["cargo", "build", "--quiet", "--profile", profile, "-p", "picloud", "-p", "picloud-bench"],
        cwd=ROOT, check=True,
    )
    target = os.path.join(ROOT, "target", "debug" if args.smoke else "release")

    servers = [start_bare(os.path.join(target, "bare-hello")),
               start_picloud(os.path.join(target, "picloud"), "picloud sqlite", {})]
    if args.postgres:
        servers.append(start_picloud(os.path.join(target, "picloud"), "picloud postgres",
                                     {"PICLOUD_DATABASE_URL": args.postgres}))
    connections = [int(c) for c in args.connections.split(",")]
    rows = {}  # (server, workload, conns) -> list of samples
    try:
        for round_no in range(args.rounds):
            for conns in connections:
                for server in servers:
                    for workload, url in server.urls.items():
                        cpu0 = proc_stat(server.proc.pid)[0]
                        rps, requests, p50, p99, errors = run_wrk(url, conns, args.seconds)
                        cpu1, rss, hwm = proc_stat(server.proc.pid)
                        cpu_us = (cpu1 - cpu0) * 1e6 / max(requests, 1)
                        rows.setdefault((server.name, workload, conns), []).append(
                            dict(rps=rps, p50=p50, p99=p99, errors=errors, cpu_us=cpu_us, rss=rss, hwm=hwm))
                        print(f"round {round_no + 1}: {server.name:16} {workload:8} c{conns:<3} {rps:10.0f} req/s",
                              file=sys.stderr)
    finally:
        for server in servers:
            server.stop()

    lines = [
        "| server | workload | conns | req/s median (min–max) | ÷ bare | p50 ms | p99 ms | errors | server CPU µs/req | RSS after MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, workload, conns), samples in rows.items():
        bare = rows.get(("bare axum", "hello", conns))
        ratio = statistics.median(s["rps"] for s in samples) / statistics.median(s["rps"] for s in bare)
        lines.append(
            f"| {name} | {workload} | {conns} | {fmt_range([s['rps'] for s in samples])} | {ratio:.2f} | "
            f"{statistics.median(s['p50'] for s in samples):.2f} | {statistics.median(s['p99'] for s in samples):.2f} | "
            f"{sum(s['errors'] for s in samples)} | {statistics.median(s['cpu_us'] for s in samples):.0f} | "
            f"{samples[-1]['rss'] / 1024:.1f} | {max(s['hwm'] for s in samples) / 1024:.1f} |"
        )
    lines.append("")
    lines.append("| server | start-up to healthy ms | idle RSS MiB |")
    lines.append("|---|---|---|")
    for server in servers:
        lines.append(f"| {server.name} | {server.startup_s * 1000:.0f} | {server.idle_rss_kib / 1024:.1f} |")
    table = "\n".join(lines)
    print(table)

    total_errors = sum(s["errors"] for samples in rows.values() for s in samples)
    if args.write_results:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        header = (
            "# Benchmark results\n\n"
            f"Measured {time.strftime('%Y-%m-%d')} on {machine}; {wrk_version.strip()};\n"
            f"`python3 bench/bench.py` ({args.rounds} interleaved rounds of {args.seconds} s, wrk -t1).\n"
            "Figures move with the machine; compare rows of one run, not runs of different days.\n\n"
        )
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
            f.write(header + table + "\n")
    if args.smoke and total_errors:
        sys.exit(f"smoke run saw {total_errors} errors")


if __name__ == "__main__":
    main()
