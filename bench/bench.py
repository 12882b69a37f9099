#!/usr/bin/env python3
"""PiCloud's benchmark: PiCloud and its ceiling (a bare axum server) under the same load, in one run.

    python3 bench/bench.py                 # release build, SQLite, 3 interleaved rounds of 10 s
    python3 bench/bench.py --postgres URL  # also PiCloud on PostgreSQL (a database it may fill)
    python3 bench/bench.py --smoke         # debug build, one 1 s round: proves the harness works
    python3 bench/bench.py --workloads kv,trigger   # only these workloads (and the bare server)
    python3 bench/bench.py --script-speed  # scripts' own speed beside a bare Rhai engine
    python3 bench/bench.py --cluster URL   # two nodes on one PostgreSQL: drain rate, wake-up latency
    python3 bench/bench.py --postgres URL --soak 600   # hello for 10 minutes, minute by minute

It builds the binaries, starts `picloud serve` on a fresh data directory, creates each workload's
app, scripts, route and trigger through the admin API, drives load with wrk at 1 and 32
connections, and prints a table: req/s (median and min-max over rounds), the ratio to the bare
server, p50/p99 latency as wrk reports them, errors, server CPU microseconds per request and RSS.
For the workloads that queue jobs (async, trigger) it waits after each wrk run until every job
has run, and prints a second table: the drain time and the jobs per second end to end.
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

# The collection whose writes the `trigger` workload's KV trigger fans out.
EVENTS = "events"
# How long the jobs of one wrk run may take to drain. A smoke run (and the check request of every
# run) fails past it, so CI catches a stuck queue; a full run warns and reports an infinite drain.
SMOKE_DRAIN_TIMEOUT_S = 60
# Where bench/RESULTS.md's history starts; --write-results keeps everything from here on.
HISTORY_HEADING = "## History"
FULL_DRAIN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Workload:
    source: str  # the endpoint script the route runs
    route: str = "/"  # the route's pattern
    request: str = "/"  # the request's path (and query) below the app
    mode: str = "sync"  # the route's dispatch mode
    # A handler script run by a KV trigger on EVENTS ("set"): each request's write queues one job.
    handler: str = ""
    # A sync script behind `GET /check` of the same app that answers `#{ count }`: after the
    # rounds, the count must equal the 2xx answers of every run of the workload (an exact result).
    check: str = ""
    # Module scripts of the app, `(name, source)`, created before the endpoint that imports them.
    modules: tuple = ()

    @property
    def queues_jobs(self):
        """Whether each request leaves a job behind, run by the dispatcher after the answer."""
        return self.mode == "async" or bool(self.handler)


WORKLOADS = {
    "hello": Workload('#{ hello: "world", n: 1 }'),
    "params": Workload(
        "#{ user: ctx.request.params.user, item: ctx.request.params.item, "
        "q: ctx.request.query.q, page: ctx.request.query.page }",
        route="/users/{user}/items/{item}",
        request="/users/ada/items/42?q=lamps&page=2",
    ),
    "compute": Workload(
        'let s = ""; let total = 0;\n'
        "for i in 0..1000 { total += i * 2; if i % 100 == 0 { s += `${i},`; } }\n"
        "#{ total: total, s: s }"
    ),
    # One durable KV read and one durable KV write per request, over 1,000 keys.
    "kv": Workload(
        'let c = kv::collection("bench"); let k = "k" + random::int(0, 999);\n'
        "let n = c.get(k); c.set(k, if n == () { 1 } else { n + 1 }); #{ key: k }"
    ),
    # Every request increments one key through get + set: the hottest conflict there is. Each
    # commit that finds the key changed since its run read it runs the script again (#15); the
    # final count must be exact, and "runs/req" says how many runs a committed request took.
    "counter": Workload(
        'let c = kv::collection("bench"); let n = c.get("count") ?? 0;\n'
        'c.set("count", n + 1); #{ n: n + 1 }',
        check='#{ count: kv::collection("bench").get("count") ?? 0 }',
    ),
    # Accepted/s of an async route: each 202 is a durably committed outbox row.
    "async": Workload("()", mode="async"),
    # One KV write per request, fanned out by a KV trigger to a handler that only reads its event
    # (it never writes to EVENTS, so it cannot trigger itself).
    # `hello` through a module (#17): the endpoint imports one module and calls its function,
    # served from the module cache; "inlined" is the same function defined in the endpoint.
    "import": Workload(
        'import "greet" as g; g::hello("world")',
        modules=(("greet", 'fn hello(name) { #{ hello: name, n: 1 } }'),),
    ),
    "inlined": Workload('fn hello(name) { #{ hello: name, n: 1 } } hello("world")'),
    "trigger": Workload(
        f'let k = "e" + random::int(0, 999); kv::collection("{EVENTS}").set(k, ctx.execution_id); #{{ key: k }}',
        handler="let key = ctx.event.kv.key; #{ handled: key }",
    ),
}

# Scripts whose own speed is measured beside a bare Rhai engine (`--script-speed`): PiCloud runs
# each as an endpoint (one request at a time, limits raised so it finishes), `bare-rhai` runs it
# on `rhai::Engine::new()`. The ratio is what the sandbox costs a script.
SCRIPT_SPEED = {
    # Builds 40,000 interpolated strings into an array, puts each into a map, sums and removes
    # them: data building, where per-container size checks cost the most.
    "build": (
        "let a = [];\n"
        "for i in 0..40000 { a.push(`item-${i}`); }\n"
        "let m = #{};\n"
        "for s in a { m[s] = s.len(); }\n"
        "let total = 0;\n"
        "for s in a { total += m[s]; m.remove(s); }\n"
        "total"
    ),
    # Pure computation, for comparison: a sieve of primes below 100,000.
    "sieve": (
        "let n = 100000; let flags = []; flags.pad(n, true); let count = 0;\n"
        "for i in 2..n { if flags[i] { count += 1; let j = i * i; "
        "while j < n { flags[j] = false; j += i; } } }\n"
        "count"
    ),
}
SCRIPT_SPEED_ENV = {
    "PICLOUD_EXECUTION_TIMEOUT_MS": "600000",
    "PICLOUD_MAX_OPERATIONS": "1000000000",
    "PICLOUD_SYNC_WAIT_MS": "600000",
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
    admin: str = ""
    startup_s: float = 0.0
    idle_rss_kib: int = 0
    token: str = ""
    urls: dict = field(default_factory=dict)
    # workload -> the URL of its `GET /check` (see Workload.check)
    checks: dict = field(default_factory=dict)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_picloud(binary, name, env_extra):
    """Starts `picloud serve` on a fresh data directory and logs in as the admin."""
    port, admin_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="picloud-bench-")
    env = dict(os.environ)
    env.update(
        PICLOUD_ADDR=f"127.0.0.1:{port}",
        PICLOUD_ADMIN_ADDR=f"127.0.0.1:{admin_port}",
        PICLOUD_DATA_DIR=data_dir,
        PICLOUD_ADMIN_PASSWORD=PASSWORD,
        PICLOUD_LOG="warn",
        # The benchmark measures how fast jobs are accepted and drained, not the quota that holds
        # a tenant's queue (10,000 by default), which a 10 s run of `async` at 32 connections meets.
        PICLOUD_MAX_QUEUED_JOBS_PER_APP="100000000",
    )
    env.update(env_extra)
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    server = Server(name, proc, base, admin=f"http://127.0.0.1:{admin_port}")
    server.startup_s = wait_healthy(f"{base}/healthz", proc)
    time.sleep(1.0)
    server.idle_rss_kib = proc_stat(proc.pid)[1]
    server.token = http("POST", f"{server.admin}/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["token"]
    return server


def create_workload(server, name, workload):
    """Creates the workload's app, script, route and trigger, and checks one request (and its job)."""
    base, admin, token = server.base, server.admin, server.token
    slug = f"bench-{name}"
    app = http("POST", f"{admin}/api/v1/admin/apps", {"slug": slug, "name": slug}, token)

    def create_script(script_name, source, kind="endpoint"):
        body = {"name": script_name, "kind": kind, "source": source}
        return http("POST", f"{admin}/api/v1/admin/apps/{app['id']}/scripts", body, token)

    for module_name, module_source in workload.modules:
        create_script(module_name, module_source, kind="module")
    script = create_script(name, workload.source)
    http(
        "POST",
        f"{admin}/api/v1/admin/scripts/{script['id']}/routes",
        {"method": "GET", "path": workload.route, "dispatch_mode": workload.mode},
        token,
    )
    if workload.handler:
        handler = create_script(f"{name}-handler", workload.handler)
        http(
            "POST",
            f"{admin}/api/v1/admin/apps/{app['id']}/triggers/kv",
            {"script_id": handler["id"], "collection": EVENTS, "ops": ["set"]},
            token,
        )
    if workload.check:
        check = create_script(f"{name}-check", workload.check)
        http(
            "POST",
            f"{admin}/api/v1/admin/scripts/{check['id']}/routes",
            {"method": "GET", "path": "/check", "dispatch_mode": "sync"},
            token,
        )
        server.checks[name] = f"{base}/{slug}/check"
    server.urls[name] = f"{base}/{slug}{workload.request}"
    before = job_counts(server)
    with urllib.request.urlopen(server.urls[name], timeout=10) as resp:
        expected = 202 if workload.mode == "async" else 200
        assert resp.status == expected, f"{name} answered {resp.status}"
    if workload.queues_jobs and drain(server, workload, before, SMOKE_DRAIN_TIMEOUT_S)[1] is None:
        sys.exit(f"{name}: the job of the check request did not run within {SMOKE_DRAIN_TIMEOUT_S} s")


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


def job_counts(server):
    """(public requests answered 2xx, executions finished ok, runs discarded for a conflict) so
    far, from /metrics."""
    with urllib.request.urlopen(f"{server.admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    answered = sum(
        int(float(n)) for n in re.findall(r'^picloud_http_requests_total\{kind="public",status="2\d\d"\} (\S+)', text, re.M)
    )
    counts = [answered]
    # Executions are labelled by app and script (#18): the ok ones of every series, summed.
    for metric in (r'picloud_executions_total\{[^}]*outcome="ok"[^}]*\}', r"picloud_run_conflicts_total"):
        counts.append(sum(int(float(n)) for n in re.findall(rf"^{metric} (\S+)", text, re.M)))
    return tuple(counts)


def drain(server, workload, before, timeout):
    """Waits until every job queued since the `before` job_counts has run.

    Each 2xx answer queued one job (an async request's own run, or a trigger event of a write); a
    sync request's own run is an ok execution too, so it is subtracted. Answers (jobs queued,
    seconds waited), the seconds being None when the timeout passed first.
    """
    start = time.monotonic()
    while True:
        answered, ok, _ = (now - then for now, then in zip(job_counts(server), before))
        jobs_run = ok - (answered if workload.mode == "sync" else 0)
        waited = time.monotonic() - start
        if jobs_run >= answered:
            return answered, waited
        if waited > timeout:
            return answered, None
        time.sleep(0.01)


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


def measure(server, name, conns, seconds, drain_timeout):
    """One wrk run of a workload on a server and, for a workload that queues jobs, their drain: the
    seconds from the end of wrk until every job has run (inf past the timeout) and the jobs per
    second from the start of wrk to then."""
    workload = WORKLOADS[name]
    if workload.check:
        # The requests the previous run of wrk left in flight still finish: let them, so that
        # the executions counted below are this workload's.
        time.sleep(0.5)
    before = job_counts(server) if server.admin else None
    cpu0 = proc_stat(server.proc.pid)[0]
    started = time.monotonic()
    rps, requests, p50, p99, errors = run_wrk(server.urls[name], conns, seconds)
    wrk_s = time.monotonic() - started
    cpu1, rss, hwm = proc_stat(server.proc.pid)
    cpu_us = (cpu1 - cpu0) * 1e6 / max(requests, 1)
    sample = dict(rps=rps, p50=p50, p99=p99, errors=errors, cpu_us=cpu_us, rss=rss, hwm=hwm, ok=requests - errors)
    if before is not None:
        if workload.check:
            # The requests wrk left in flight still finish, and commit: let them.
            time.sleep(0.5)
        answered, ok, conflicts = (now - then for now, then in zip(job_counts(server), before))
        sample["runs_per_req"] = (answered + conflicts) / max(answered, 1)
        sample["executions_ok"] = ok
    if workload.queues_jobs:
        jobs, drain_s = drain(server, workload, before, drain_timeout)
        drain_s = float("inf") if drain_s is None else drain_s
        sample.update(jobs=jobs, drain_s=drain_s, jobs_per_s=jobs / (wrk_s + drain_s))
    return sample


def runs_per_req(samples):
    """Runs per answered request, median over rounds: above 1 when commits conflicted and scripts
    ran again (`—` for a server without the count)."""
    runs = [s["runs_per_req"] for s in samples if "runs_per_req" in s]
    return f"{statistics.median(runs):.2f}" if runs else "—"


def check_counts(servers, rows):
    """For every workload with a `check`: the count its check route reads must equal the
    executions of the workload that finished ok — every one committed its increment once —,
    plus create_workload's check request. Exits when one differs; answers a line per workload
    for the results."""
    lines = []
    for server in servers:
        for name, url in server.checks.items():
            with urllib.request.urlopen(url, timeout=30) as resp:
                count = json.loads(resp.read())["count"]
            samples = [s for key, runs in rows.items() if key[:2] == (server.name, name) for s in runs]
            committed = 1 + sum(s["executions_ok"] for s in samples)
            answered = 1 + sum(s["ok"] for s in samples)
            if count != committed:
                sys.exit(f"{server.name} {name}: the count is {count}, but {committed} executions finished ok")
            lines.append(
                f"{server.name} `{name}`: the count is exact: {count}, one per execution that "
                f"finished ok ({answered} of them answered within wrk's runs)."
            )
    return lines


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



def script_speed(target, runs):
    """Each SCRIPT_SPEED script's milliseconds on a bare engine and as a PiCloud endpoint."""
    lines = ["| script | bare rhai ms median | picloud ms median | ÷ bare |", "|---|---|---|---|"]
    server = start_picloud(os.path.join(target, "picloud"), "picloud sqlite", SCRIPT_SPEED_ENV)
    try:
        for name, source in SCRIPT_SPEED.items():
            with tempfile.NamedTemporaryFile("w", suffix=".rhai", delete=False) as f:
                f.write(source)
            out = subprocess.run(
                [os.path.join(target, "bare-rhai"), f.name, str(runs)], capture_output=True, text=True, check=True
            ).stdout
            os.unlink(f.name)
            bare = statistics.median(float(t) for t in out.split())
            create_workload(server, f"speed-{name}", Workload(source))
            times = []
            for _ in range(runs):
                start = time.monotonic()
                with urllib.request.urlopen(server.urls[f"speed-{name}"], timeout=600) as resp:
                    resp.read()
                times.append((time.monotonic() - start) * 1000)
            ours = statistics.median(times)
            print(f"{name}: bare {bare:.1f} ms, picloud {ours:.1f} ms", file=sys.stderr)
            lines.append(f"| {name} | {bare:.1f} | {ours:.1f} | {ours / bare:.2f} |")
    finally:
        server.stop()
    return "\n".join(lines)

# `--docs-find`: a collection of DOCS_FIND_COUNT documents, seeded DOCS_FIND_BATCH per execution,
# and a route that finds one of them by an equality filter on `email` — measured without, then
# with, an index declared on `email` (issue #16).
DOCS_FIND_COUNT = 100_000
DOCS_FIND_BATCH = 1_000
DOCS_FIND_SEED = (
    'let people = docs::collection("people"); let from = ctx.request.query.from.parse_int();\n'
    "for i in from..from + " + str(DOCS_FIND_BATCH) + " {\n"
    '  people.create(#{ email: `user${i}@example.com`, age: i % 90, tier: if i % 10 == 0 { "gold" } else { "basic" },\n'
    '                   address: #{ city: `city${i % 500}`, zip: i % 10000 } });\n'
    "}\n#{ seeded: from }"
)
DOCS_FIND_QUERY = 'docs::collection("people").find(#{ email: ctx.request.query.email }).map(|d| d.id)'


def docs_find(target, postgres, seconds, rounds):
    """`find` by equality on DOCS_FIND_COUNT documents, without and with a declared index, per
    backend: wrk at one connection, median over rounds."""
    lines = [
        "| server | documents | index | find req/s median (min–max) | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    envs = {"picloud sqlite": {}}
    if postgres:
        envs["picloud postgres"] = {"PICLOUD_DATABASE_URL": postgres}
    for name, env in envs.items():
        server = start_picloud(os.path.join(target, "picloud"), name, env)
        try:
            admin, token = server.admin, server.token
            app = http("POST", f"{admin}/api/v1/admin/apps", {"slug": "bench-docs", "name": "docs"}, token)
            for script_name, source, path in [("seed", DOCS_FIND_SEED, "/seed"), ("find", DOCS_FIND_QUERY, "/find")]:
                script = http("POST", f"{admin}/api/v1/admin/apps/{app['id']}/scripts",
                              {"name": script_name, "kind": "endpoint", "source": source}, token)
                http("POST", f"{admin}/api/v1/admin/scripts/{script['id']}/routes",
                     {"method": "GET", "path": path, "dispatch_mode": "sync"}, token)
            started = time.monotonic()
            for start in range(0, DOCS_FIND_COUNT, DOCS_FIND_BATCH):
                with urllib.request.urlopen(f"{server.base}/bench-docs/seed?from={start}", timeout=600) as resp:
                    assert resp.status == 200, f"seeding answered {resp.status}"
            print(f"{name}: seeded {DOCS_FIND_COUNT} documents in {time.monotonic() - started:.1f} s", file=sys.stderr)
            url = f"{server.base}/bench-docs/find?email=user{DOCS_FIND_COUNT // 2 + 7}@example.com"
            with urllib.request.urlopen(url, timeout=600) as resp:
                assert len(json.loads(resp.read())) == 1, "the find finds one document"
            for indexed in (False, True):
                if indexed:
                    started = time.monotonic()
                    http("POST", f"{admin}/api/v1/admin/apps/{app['id']}/docs/people/indexes", {"path": "email"}, token)
                    print(f"{name}: index built in {time.monotonic() - started:.1f} s", file=sys.stderr)
                samples = [run_wrk(url, 1, seconds) for _ in range(rounds)]
                rps = [s[0] for s in samples]
                print(f"{name}: index={indexed} {statistics.median(rps):.0f} req/s", file=sys.stderr)
                lines.append(
                    f"| {name} | {DOCS_FIND_COUNT:,} | {'email' if indexed else 'none'} | {fmt_range(rps)} | "
                    f"{statistics.median(s[2] for s in samples):.2f} | {statistics.median(s[3] for s in samples):.2f} | "
                    f"{sum(s[4] for s in samples)} |"
                )
        finally:
            server.stop()
    return "\n".join(lines)


# The cluster mode (#19): two nodes on one PostgreSQL database.
# Jobs of one drain: CLUSTER_FILLS sync requests that each write CLUSTER_FILL_SIZE KV entries into
# a collection with a KV trigger, so each queues that many trigger jobs in one commit.
CLUSTER_FILLS = 10
CLUSTER_FILL_SIZE = 1000
CLUSTER_JOBS = CLUSTER_FILLS * CLUSTER_FILL_SIZE
CLUSTER_FILL = (
    'let from = parse_int(ctx.request.query.from); let jobs = kv::collection("jobs");\n'
    f'for i in from..from + {CLUSTER_FILL_SIZE} {{ jobs.set(`j${{i}}`, i); }}\n'
    "#{ queued: " + str(CLUSTER_FILL_SIZE) + " }"
)
# A trigger job's handler: a little work, like a webhook's bookkeeping.
CLUSTER_HANDLER = 'let n = ctx.event.kv.value; let s = 0; for i in 0..20 { s += n * i; } s'
# Wake-up samples: an async request accepted by node A, whose only executor slot is busy, so that
# node B runs it; its script stamps the time it started.
CLUSTER_WAKE_SAMPLES = 200
CLUSTER_STAMP = 'kv::collection("stamps").set(ctx.request.query.n, time::now())'
CLUSTER_READ = 'kv::collection("stamps").get(ctx.request.query.n)'
# Keeps node A's one executor slot busy for the wake-up samples (about 20 s on this machine).
CLUSTER_SPIN = "let s = 0; for i in 0..60000000 { s += i; } s"


def cluster_node(binary, name, url, cpu, env_extra):
    """A `picloud serve` on the shared database, pinned to `cpu` when the machine has another."""
    env = {"PICLOUD_DATABASE_URL": url, "PICLOUD_MAX_WRITES": str(CLUSTER_FILL_SIZE),
           "PICLOUD_MAX_TRIGGER_JOBS_PER_EXECUTION": str(CLUSTER_FILL_SIZE)}
    env.update(env_extra)
    server = start_picloud(binary, name, env)
    if cpu is not None and shutil.which("taskset"):
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(server.proc.pid)],
                       check=True, capture_output=True)
    return server


def executions_ok(server):
    """Executions finished ok on this node so far."""
    return job_counts(server)[1]


def cluster_drain(nodes, fill_urls):
    """Queues CLUSTER_JOBS trigger jobs through the first node, spread over the apps of
    `fill_urls`, and waits until they all ran; answers (seconds from the first fill to the last
    job, jobs each node ran)."""
    before = [executions_ok(node) for node in nodes]
    started = time.monotonic()
    for fill in range(CLUSTER_FILLS):
        fill_url = fill_urls[fill % len(fill_urls)]
        with urllib.request.urlopen(f"{fill_url}?from={fill * CLUSTER_FILL_SIZE}", timeout=60) as resp:
            assert resp.status == 200, f"a fill answered {resp.status}"
    # Each fill is an ok execution too, on the node that answered it.
    want = CLUSTER_JOBS + CLUSTER_FILLS
    while True:
        ran = [executions_ok(node) - b for node, b in zip(nodes, before)]
        if sum(ran) >= want:
            elapsed = time.monotonic() - started
            ran[0] -= CLUSTER_FILLS
            return elapsed, ran
        if time.monotonic() - started > FULL_DRAIN_TIMEOUT_S:
            sys.exit(f"{CLUSTER_JOBS} jobs did not drain within {FULL_DRAIN_TIMEOUT_S} s "
                     f"(executions finished ok on each node: {ran})")
        time.sleep(0.02)


def cluster_setup(node, slug):
    """The app `slug` on `node`: the fill, its trigger handler, the stamp and its reader, the spin."""
    admin, token = node.admin, node.token
    app = http("POST", f"{admin}/api/v1/admin/apps", {"slug": slug, "name": slug}, token)

    def script(name, source, method, path, mode):
        created = http("POST", f"{admin}/api/v1/admin/apps/{app['id']}/scripts",
                       {"name": name, "kind": "endpoint", "source": source}, token)
        if path:
            http("POST", f"{admin}/api/v1/admin/scripts/{created['id']}/routes",
                 {"method": method, "path": path, "dispatch_mode": mode}, token)
        return created

    script("fill", CLUSTER_FILL, "GET", "/fill", "sync")
    handler = script("handler", CLUSTER_HANDLER, None, None, None)
    http("POST", f"{admin}/api/v1/admin/apps/{app['id']}/triggers/kv",
         {"script_id": handler["id"], "collection": "jobs", "ops": ["set"]}, token)
    script("stamp", CLUSTER_STAMP, "POST", "/stamp", "async")
    script("read", CLUSTER_READ, "GET", "/read", "sync")
    script("spin", CLUSTER_SPIN, "POST", "/spin", "async")


def post(url):
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        return resp.status, resp.read()


def cluster(target, url, rounds, apps):
    """Two nodes on one PostgreSQL: the drain rate of CLUSTER_JOBS jobs (of `apps` apps) on one
    node and on two, and the wake-up latency of a job accepted by node A and run by node B."""
    binary = os.path.join(target, "picloud")
    cpus = os.cpu_count() or 1
    pin = (lambda n: n % cpus) if cpus > 1 else (lambda n: None)
    lines = []
    a = cluster_node(binary, "node A", url, pin(0), {})
    b = None
    try:
        slugs = [f"bench-cluster-{n}" for n in range(apps)]
        for slug in slugs:
            cluster_setup(a, slug)
        fill_urls = [f"{a.base}/{slug}/fill" for slug in slugs]
        drains = {1: [], 2: []}
        for round_no in range(rounds):
            for count in (1, 2):
                if count == 2 and b is None:
                    b = cluster_node(binary, "node B", url, pin(1), {})
                if count == 1 and b is not None:
                    b.stop()
                    b = None
                nodes = [a] if count == 1 else [a, b]
                elapsed, ran = cluster_drain(nodes, fill_urls)
                drains[count].append((elapsed, ran))
                print(f"round {round_no + 1}: {count} node(s) drained {CLUSTER_JOBS} jobs in {elapsed:.2f} s "
                      f"({CLUSTER_JOBS / elapsed:.0f} jobs/s; each ran {ran})", file=sys.stderr)
        if b is not None:
            b.stop()
            b = None
        one = statistics.median(CLUSTER_JOBS / e for e, _ in drains[1])
        two = statistics.median(CLUSTER_JOBS / e for e, _ in drains[2])
        lines += [
            f"| nodes | drain of {CLUSTER_JOBS:,} jobs of {apps} app(s), s median (min–max) | jobs/s median (min–max) | jobs each node ran (last round) |",
            "|---|---|---|---|",
        ]
        for count in (1, 2):
            lines.append(
                f"| {count} | {fmt_range([e for e, _ in drains[count]], '{:.2f}')} | "
                f"{fmt_range([CLUSTER_JOBS / e for e, _ in drains[count]])} | {drains[count][-1][1]} |"
            )
        lines.append("")
        lines.append(f"Two nodes ÷ one: {two / one:.2f}×.")
        lines.append("")

        # Wake-ups: A's one executor slot spins, so A accepts and B runs.
        a.stop()
        a = cluster_node(binary, "node A", url, pin(0), {
            "PICLOUD_MAX_CONCURRENT_EXECUTIONS": "1", "PICLOUD_MAX_OPERATIONS": "1000000000",
            "PICLOUD_EXECUTION_TIMEOUT_MS": "120000"})
        assert post(f"{a.base}/{slugs[0]}/spin")[0] == 202
        time.sleep(0.5)  # A claims its own job at once; B is not there yet to take it
        b = cluster_node(binary, "node B", url, pin(1), {})
        accepted = {}
        spin_started = time.monotonic()
        for n in range(CLUSTER_WAKE_SAMPLES):
            status, _ = post(f"{a.base}/{slugs[0]}/stamp?n=s{n}")
            accepted[n] = time.time() * 1000
            assert status == 202, f"a stamp answered {status}"
            time.sleep(0.02)
        spent = time.monotonic() - spin_started
        latencies = []
        deadline = time.monotonic() + 30
        for n in range(CLUSTER_WAKE_SAMPLES):
            while True:
                with urllib.request.urlopen(f"{b.base}/{slugs[0]}/read?n=s{n}", timeout=10) as resp:
                    stamp = json.loads(resp.read())
                if stamp is not None:
                    latencies.append(stamp - accepted[n])
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"the stamp s{n} never ran")
                time.sleep(0.05)
        latencies.sort()
        b_ran = executions_ok(b)
        pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        lines += [
            "| wake-up: 202 on node A → start on node B | samples | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
            f"| async job, A's executor busy | {len(latencies)} | {pct(0.5):.0f} | {pct(0.9):.0f} | {pct(0.99):.0f} | {latencies[-1]:.0f} |",
            "",
            f"(The samples took {spent:.1f} s while node A's one executor slot ran its spin; node B finished "
            f"{b_ran} executions, the stamps and their reads.)",
        ]
    finally:
        a.stop()
        if b is not None:
            b.stop()
    return "\n".join(lines)


SOAK_MINUTE_S = 60
SOAK_TABLES = ("outbox", "sync_requests_0", "sync_requests_1")


def dead_rows(url):
    """`{table: (dead rows, bytes on disk)}` of the outbox and the sync requests' partitions."""
    names = ", ".join(f"'{name}'" for name in SOAK_TABLES)
    out = subprocess.run(
        ["psql", url, "-Atc",
         f"SELECT relname, n_dead_tup, pg_total_relation_size(relid) FROM pg_stat_user_tables WHERE relname IN ({names})"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = (line.split("|") for line in out.splitlines() if line)
    return {name: (int(dead), int(size)) for name, dead, size in rows}


def soak(target, url, seconds, connections):
    """`hello` on PostgreSQL for `seconds`, minute by minute: each minute's req/s against the
    run's median, and the dead rows the outbox and the sync requests' partitions carry after it."""
    server = start_picloud(os.path.join(target, "picloud"), "picloud postgres", {"PICLOUD_DATABASE_URL": url})
    try:
        create_workload(server, "hello", WORKLOADS["hello"])
        minutes = []
        for minute in range(max(1, seconds // SOAK_MINUTE_S)):
            rps, _, p50, p99, errors = run_wrk(server.urls["hello"], connections, SOAK_MINUTE_S)
            minutes.append((rps, p50, p99, errors, dead_rows(url)))
            print(f"minute {minute + 1}: {rps:.0f} req/s, p99 {p99:.2f} ms, dead rows {minutes[-1][4]}", file=sys.stderr)
    finally:
        server.stop()
    median = statistics.median(m[0] for m in minutes)
    lines = [
        f"`hello` at {connections} connections on PostgreSQL, {len(minutes)} minutes back to back "
        f"(median {median:.0f} req/s; slowest minute {min(m[0] for m in minutes) / median:.2f} of it):",
        "",
        "| minute | req/s | ÷ median | p50 ms | p99 ms | errors | " + " | ".join(f"{t} dead rows (MiB)" for t in SOAK_TABLES) + " |",
        "|---" * (6 + len(SOAK_TABLES)) + "|",
    ]
    for i, (rps, p50, p99, errors, dead) in enumerate(minutes):
        cells = " | ".join(
            f"{dead[t][0]:,} ({dead[t][1] / 1048576:.1f})" if t in dead else "—" for t in SOAK_TABLES
        )
        lines.append(f"| {i + 1} | {rps:.0f} | {rps / median:.2f} | {p50:.2f} | {p99:.2f} | {errors} | {cells} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="debug build, one round of 1 s per workload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"run only these, comma-separated (default: all of {','.join(WORKLOADS)}); "
                             "the bare server always runs")
    parser.add_argument("--postgres", metavar="URL", help="also run PiCloud on this PostgreSQL database")
    parser.add_argument("--write-results", action="store_true", help="write the table to bench/RESULTS.md")
    parser.add_argument("--script-speed", action="store_true",
                        help="only measure SCRIPT_SPEED's scripts beside a bare Rhai engine, one request at a time")
    parser.add_argument("--cluster", metavar="URL",
                        help="only measure two nodes on this PostgreSQL database (which it may fill): "
                             f"the drain of {CLUSTER_JOBS:,} jobs on one node and on two, and cross-node wake-ups")
    parser.add_argument("--cluster-apps", type=int, default=1, metavar="N",
                        help="with --cluster: spread the jobs over N apps (each app's jobs commit one at a time)")
    parser.add_argument("--soak", type=int, metavar="SECONDS",
                        help="only `hello` on the --postgres database (a fresh one) for SECONDS, minute by minute, "
                             "with the dead rows of the outbox and the sync requests after each minute")
    parser.add_argument("--docs-find", action="store_true",
                        help=f"only measure docs find by equality on {DOCS_FIND_COUNT:,} documents, without and with an index")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 1
    workloads = args.workloads.split(",")
    unknown = [name for name in workloads if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)} (known: {', '.join(WORKLOADS)})")
    drain_timeout = SMOKE_DRAIN_TIMEOUT_S if args.smoke else FULL_DRAIN_TIMEOUT_S

    ensure_wrk()
    profile = "dev" if args.smoke else "release"
    print(f"building ({profile})…", file=sys.stderr)
    subprocess.run(
        ["cargo", "build", "--quiet", "--profile", profile, "-p", "picloud", "-p", "picloud-bench"],
        cwd=ROOT, check=True,
    )
    target = os.path.join(ROOT, "target", "debug" if args.smoke else "release")
    if args.script_speed:
        print(script_speed(target, args.rounds))
        return
    if args.docs_find:
        print(docs_find(target, args.postgres, args.seconds, args.rounds))
        return
    if args.cluster:
        print(cluster(target, args.cluster, args.rounds, args.cluster_apps))
        return
    if args.soak:
        if not args.postgres:
            parser.error("--soak runs on PostgreSQL: give --postgres URL")
        print(soak(target, args.postgres, args.soak, max(int(c) for c in args.connections.split(","))))
        return

    picloud_envs = {"picloud sqlite": {}}
    if args.postgres:
        picloud_envs["picloud postgres"] = {"PICLOUD_DATABASE_URL": args.postgres}
    connections = [int(c) for c in args.connections.split(",")]
    rows = {}  # (server, workload, conns) -> list of samples
    servers = []
    try:
        servers.append(start_bare(os.path.join(target, "bare-hello")))
        for name, env in picloud_envs.items():
            servers.append(start_picloud(os.path.join(target, "picloud"), name, env))
            for workload in workloads:
                create_workload(servers[-1], workload, WORKLOADS[workload])
        for round_no in range(args.rounds):
            for conns in connections:
                for server in servers:
                    for workload in server.urls:
                        sample = measure(server, workload, conns, args.seconds, drain_timeout)
                        rows.setdefault((server.name, workload, conns), []).append(sample)
                        progress = f"round {round_no + 1}: {server.name:16} {workload:8} c{conns:<3} {sample['rps']:10.0f} req/s"
                        if "jobs" in sample:
                            progress += f", {sample['jobs']} jobs drained in {sample['drain_s']:.2f} s"
                        print(progress, file=sys.stderr)
                        if sample.get("drain_s") == float("inf"):
                            message = f"{server.name} {workload} c{conns}: the jobs did not drain within {drain_timeout} s"
                            if args.smoke:
                                sys.exit(message)
                            print(f"warning: {message}", file=sys.stderr)
        exact = check_counts(servers, rows)
    finally:
        for server in servers:
            server.stop()

    lines = [
        "| server | workload | conns | req/s median (min–max) | ÷ bare | p50 ms | p99 ms | errors | runs/req | server CPU µs/req | RSS after MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, workload, conns), samples in rows.items():
        bare = rows.get(("bare axum", "hello", conns))
        ratio = statistics.median(s["rps"] for s in samples) / statistics.median(s["rps"] for s in bare)
        lines.append(
            f"| {name} | {workload} | {conns} | {fmt_range([s['rps'] for s in samples])} | {ratio:.2f} | "
            f"{statistics.median(s['p50'] for s in samples):.2f} | {statistics.median(s['p99'] for s in samples):.2f} | "
            f"{sum(s['errors'] for s in samples)} | {runs_per_req(samples)} | {statistics.median(s['cpu_us'] for s in samples):.0f} | "
            f"{samples[-1]['rss'] / 1024:.1f} | {max(s['hwm'] for s in samples) / 1024:.1f} |"
        )
    job_rows = {key: samples for key, samples in rows.items() if "jobs" in samples[0]}
    if job_rows:
        lines.append("")
        lines.append("| server | workload | conns | requests accepted median | drain s median (min–max) | end-to-end jobs/s median (min–max) |")
        lines.append("|---|---|---|---|---|---|")
        for (name, workload, conns), samples in job_rows.items():
            lines.append(
                f"| {name} | {workload} | {conns} | {statistics.median(s['jobs'] for s in samples):.0f} | "
                f"{fmt_range([s['drain_s'] for s in samples], '{:.2f}')} | {fmt_range([s['jobs_per_s'] for s in samples])} |"
            )
    for line in exact:
        lines.append("")
        lines.append(line)
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
        # The latest table replaces the old one; the history below it (hand-written notes of what
        # moved the figures) stays.
        path = os.path.join(ROOT, "bench", "RESULTS.md")
        history = ""
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
            if HISTORY_HEADING in old:
                history = "\n" + old[old.index(HISTORY_HEADING):]
        with open(path, "w") as f:
            f.write(header + table + "\n" + history)
    if args.smoke and total_errors:
        sys.exit(f"smoke run saw {total_errors} errors")


if __name__ == "__main__":
    main()
