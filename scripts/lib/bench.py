#!/usr/bin/env python3
"""scripts/bench's load part: the engine under wrk next to pgbench on the same server and
schema, in one run. Called by scripts/bench with DATABASE_URL, PG_BINDIR, the release
binaries and the output path; prints one table and writes bench/results.json."""
import base64, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.environ["OOB_ENGINE_BINARY"]
BENCH = os.environ["OOB_BENCH_BINARY"]
DATABASE_URL = os.environ["DATABASE_URL"]
PG_BINDIR = os.environ["PG_BINDIR"]
SECONDS = int(os.environ.get("OOB_BENCH_SECONDS", "4"))
# Rounds of each peak measurement (pgbench, then the engine); the best round of each side counts.
ROUNDS = int(os.environ.get("OOB_BENCH_ROUNDS", "2"))
PACED_SECONDS = int(os.environ.get("OOB_BENCH_PACED_SECONDS", "10"))
# Each calibration probe of a latency run has its own ids (decisions need fresh PENDING ones).
PROBE_TAGS = ["c", "d", "e", "f"]
# A latency run landing more than RERUN_TOLERANCE off its target rate is made again (twice at most).
RERUN_TAGS = ["g", "h"]
RERUN_TOLERANCE = 0.05
LEVELS = [int(x) for x in os.environ.get("OOB_BENCH_LEVELS", "1,16,64").split(",")]
PACED_CONNECTIONS = 64
# Issue 8's targets: each scenario's engine peak as a multiple of pgbench's peak in the same run.
TARGET_RATIOS = {"authenticate": 1.5, "poll": 1.5, "decision": 1.5, "mix": 2.0}
ISSUER = "BENCH00001"
SECRET = "bench-secret-0123456789"
KEY = base64.b64encode(b"bench-signing-key-0123456789-abcdefghij").decode()


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql):
    out = subprocess.run([os.path.join(PG_BINDIR, "psql"), DATABASE_URL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def vacuum_tables(checkpoint=False):
    """As pgbench does before its runs: the written tables vacuumed and analysed, so that an
    autovacuum of rows written earlier does not start in the middle of a measurement."""
    for statement in ["vacuum analyze authentications", "vacuum analyze transitions"] + (["checkpoint"] if checkpoint else []):
        psql(statement)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Engine:
    def __init__(self, prefix=(), ready_seconds=60):
        self.api, self.ops = free_port(), free_port()
        config = {
            "issuers": [{"id": ISSUER, "challengeTTLSeconds": 3600}],
            "authenticators": [{"issuerId": ISSUER, "consumerId": "bench-consumer", "appInstanceId": "bench-app",
                                "authnType": "BIOMETRIC"}],
            "clients": [{"id": "d1", "secret": SECRET, "scopes": ["d1"], "issuers": [ISSUER]},
                        {"id": "app", "secret": SECRET, "scopes": ["app"], "issuers": [ISSUER]}],
            "signingKeys": [{"kid": "bench", "alg": "HS256", "secret": KEY}],
            "database": {"poolSize": 16},
            "http": {"maxConnections": 10000, "maxInFlightRequests": 8192},
        }
        self.config_path = os.path.join(ROOT, ".tmp", "bench-config.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        env = dict(os.environ, OOB_CONFIG=self.config_path, OOB_LISTEN="127.0.0.1:%d" % self.api,
                   OOB_OPS_LISTEN="127.0.0.1:%d" % self.ops, OOB_LOG_LEVEL="warning", OOB_EXIT_ON_STDIN_EOF="1")
        self.log = open(os.path.join(ROOT, ".tmp", "bench-engine.log"), "a")
        self.process = subprocess.Popen(list(prefix) + [ENGINE, "serve"], env=env, stdin=subprocess.PIPE, stdout=self.log,
                                        stderr=self.log)
        deadline = time.time() + ready_seconds
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health/ready" % self.ops, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("the engine did not become ready (see .tmp/bench-engine.log)")

    def token(self, client):
        request = urllib.request.Request("http://127.0.0.1:%d/authz/d1/v1/oauth2/token" % self.api,
                                         data=b"grant_type=client_credentials", method="POST")
        request.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (client, SECRET)).encode()).decode())
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)["access_token"]

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def instructions_per_request():
    """User-space instructions the engine executes per request, counted by valgrind's callgrind
    on the engine process: a count, not a time, so unlike every other figure here it does not
    move with the VM's speed or with what else runs (the kernel's share, the system calls, is
    not in it). Two requests: the trivial route of the HTTP layer, and a poll with a bearer
    token of a final authentication (answered from memory, as D1's repeated polls are). Each is
    sent 2,000 times to warm up, then counted over 20,000 (8 keep-alive connections, one
    request in flight on each). None without valgrind."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        log("valgrind not available: instructions per request not measured")
        return None
    try:
        return count_instructions()
    except (SystemExit, Exception) as error:
        # A side measurement: the run goes on without it.
        log("instructions per request not measured: %s" % error)
        return None


def count_instructions():
    seed_pending("ins-", 1000, "AUTHENTICATION_FAILED")
    # OOB_BENCH_CALLGRIND_DIR keeps the profiles (callgrind.out.1: the trivial route,
    # .2: the cached poll) for callgrind_annotate; otherwise they are thrown away.
    keep = os.environ.get("OOB_BENCH_CALLGRIND_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
    directory = keep or tempfile.mkdtemp(prefix="callgrind-", dir=os.path.join(ROOT, ".tmp"))
    out = os.path.join(directory, "callgrind.out")
    engine = Engine(prefix=["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out],
                    ready_seconds=300)
    try:
        token = engine.token("d1")
        requests = {
            "trivial_route": (engine.ops, lambda n: b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            "cached_poll": (engine.api, lambda n: (
                "GET /banking/d1/v1/issuers/%s/consumers/bench-consumer/authentication/ins-%d HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n" % (ISSUER, n % 1000 + 1, token)).encode()),
        }
        def send(port, build, count):
            sockets = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(8)]
            for done in range(0, count, len(sockets)):
                for index, s in enumerate(sockets):
                    s.sendall(build(done + index))
                for s in sockets:
                    answer = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise SystemExit("the engine closed a connection during the instruction count")
                        answer += chunk
                        head, _, body = answer.partition(b"\r\n\r\n")
                        if _ and not head.startswith(b"HTTP/1.1 200"):
                            raise SystemExit("instruction count: %r" % head.split(b"\r\n")[0])
                        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                        if _ and length and len(body) >= int(length.group(1)):
                            break
            for s in sockets:
                s.close()
        counted = 20000
        results = {"requests_counted": counted}
        for part, (name, (port, build)) in enumerate(requests.items(), start=1):
            send(port, build, 2000)
            subprocess.run(["callgrind_control", "--instr=on", str(engine.process.pid)], check=True, capture_output=True)
            send(port, build, counted)
            subprocess.run(["callgrind_control", "--dump", str(engine.process.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "--instr=off", str(engine.process.pid)], check=True, capture_output=True)
            with open("%s.%d" % (out, part)) as f:
                totals = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
            results[name] = round(totals / counted)
        log("instructions per request (callgrind, user space): trivial route %(trivial_route)d, cached poll %(cached_poll)d" % results)
        return results
    finally:
        engine.stop()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def nginx_trivial_route():
    """The same trivial route served by nginx (an epoll loop per core, the kind of server issue 8
    measured at about 105,000 requests/s), under the same wrk, for this machine's HTTP limit.
    None without an nginx binary (scripts/bench finds one or unpacks Debian's package under .tmp)."""
    binary = os.environ.get("OOB_NGINX_BINARY") or shutil.which("nginx")
    if not binary or not os.access(binary, os.X_OK):
        return None
    directory = tempfile.mkdtemp(prefix="nginx-", dir=os.path.join(ROOT, ".tmp"))
    os.chmod(directory, 0o755)
    port = free_port()
    with open(os.path.join(directory, "nginx.conf"), "w") as f:
        f.write("""worker_processes %(workers)d;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        default_type application/json;
        location / { return 200 '{"status":"live"}'; }
    }
}
""" % {"workers": os.cpu_count() or 1, "dir": directory, "port": port})
    process = subprocess.Popen([binary, "-p", directory, "-e", os.path.join(directory, "error.log"),
                                "-c", os.path.join(directory, "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        if process.poll() is not None:
            log("nginx did not start: no HTTP reference in this run")
            return None
        return wrk(None, "http://127.0.0.1:%d/health/live" % port, 64, [])
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def scrape(engine):
    """The engine's /metrics, as text."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % engine.ops, timeout=10) as r:
        return r.read().decode()


def cached_records(engine):
    """The engine's own count of authentications in its poll cache (the oob_poll_cache_records gauge)."""
    for line in scrape(engine).splitlines():
        if line.startswith("oob_poll_cache_records "):
            return int(float(line.split()[1]))
    return None


# The group commit's statements each scenario sends (oob_db_batch_* kinds), and its routes.
BATCH_KINDS = {"authenticate": ["create"], "poll": ["find"], "decision": ["decision"], "mix": ["create", "find", "decision"]}
SCENARIO_ROUTES = {"authenticate": ["d1.authenticate"], "poll": ["d1.authentication-result"], "decision": ["app.decision"],
                   "mix": ["d1.authenticate", "d1.authentication-result", "app.decision"]}


def batch_histograms(engine):
    """The engine's group-commit histograms and its API routes' durations:
    {(family, kind or route): {"buckets": [(le, cumulative)], "sum", "count"}}."""
    text = scrape(engine)
    out = {}
    pattern = (r'^(oob_db_batch_\w+?|oob_http_request_duration_seconds)_(bucket|sum|count)'
               r'\{(?:kind|listener="api",route)="([\w.-]+)"(?:,le="([^"]+)")?\} (\S+)$')
    for m in re.finditer(pattern, text, re.M):
        family, part, kind, le, value = m.groups()
        entry = out.setdefault((family, kind), {"buckets": [], "sum": 0.0, "count": 0.0})
        if part == "bucket":
            entry["buckets"].append((float(le), float(value)))
        else:
            entry[part] = float(value)
    return out


def database_activity():
    """Counters of PostgreSQL's own work so far: checkpoints, WAL records, full-page images, bytes, syncs."""
    row = psql("select checkpoints_timed + checkpoints_req, wal_records, wal_fpi, wal_bytes, wal_sync"
               " from pg_stat_bgwriter, pg_stat_wal").split("|")
    return dict(zip(["checkpoints", "wal_records", "wal_fpi", "wal_bytes", "wal_sync"], (float(x) for x in row)))


def machine_activity():
    """This machine's CPU time so far (/proc/stat, all cores): user+nice, system+irq+softirq, idle,
    iowait, and steal (time the hypervisor gave this VM's virtual CPUs to something else)."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return {"busy": user + nice + system + irq + softirq, "idle": idle, "iowait": iowait, "steal": steal}


def histogram_quantile(buckets, fraction):
    """The upper bound, in ms, of the bucket holding the fraction-th observation (a bound, not an
    estimate); None when there is none or it lies beyond the last finite bound."""
    total = buckets[-1][1] if buckets else 0
    for le, cumulative in buckets:
        if total and cumulative >= fraction * total:
            return round(1000 * le, 3) if le != float("inf") else None
    return None


def database_during(before, after, seconds):
    """PostgreSQL's work between two `database_activity` readings `seconds` apart."""
    d = {k: after[k] - before[k] for k in after}
    return {"checkpoints": int(d["checkpoints"]), "wal_mb_per_s": round(d["wal_bytes"] / seconds / 1e6, 1),
            "full_page_image_share_of_wal_records": round(d["wal_fpi"] / d["wal_records"], 3) if d["wal_records"] else None,
            "wal_syncs_per_s": round(d["wal_sync"] / seconds)}


def cpu_during(before, after):
    """Shares of the CPU time between two `machine_activity` readings."""
    d = {k: after[k] - before[k] for k in after}
    total = sum(d.values())
    return {k + "_share": round(v / total, 4) if total else None for k, v in d.items()}


def where_the_time_went(scenario, before, after, db_before, db_after, seconds, cpu_before, cpu_after):
    """What the engine and PostgreSQL did during a latency run: the share of the scenario's
    requests the engine itself took over 5, 10 and 25 ms to answer; per kind of group-commit
    statement, how many, how full, the time from sending one to its commit (p50, p99, share over
    10 ms) and each request's wait for its statement to be sent; and the database's checkpoints,
    WAL volume, full-page images and WAL syncs. Quantiles are bucket bounds ("at most")."""
    def delta(family, kind):
        a, b = after.get((family, kind)), before.get((family, kind), {"buckets": [], "sum": 0.0, "count": 0.0})
        if not a:
            return None
        earlier = dict(b["buckets"])
        return {"buckets": [(le, c - earlier.get(le, 0.0)) for le, c in a["buckets"]],
                "sum": a["sum"] - b["sum"], "count": a["count"] - b["count"]}
    def over(h, bound):
        within = dict(h["buckets"]).get(bound, 0.0)
        return (h["count"] - within) / h["count"] if h["count"] else None
    # The engine's own clock, from a request's arrival to its answer: what wrk measures
    # beyond this is spent before the engine reads the request or after it sends the answer.
    routes = {}
    for route in SCENARIO_ROUTES[scenario]:
        duration = delta("oob_http_request_duration_seconds", route)
        if duration and duration["count"]:
            routes[route] = {"requests": int(duration["count"]), "over_5_ms": round(over(duration, 0.005), 4),
                             "over_10_ms": round(over(duration, 0.01), 4), "over_25_ms": round(over(duration, 0.025), 4),
                             "p99_ms_at_most": histogram_quantile(duration["buckets"], 0.99)}
    kinds = {}
    for kind in BATCH_KINDS[scenario]:
        rows, commit, queue = (delta("oob_db_batch_rows", kind), delta("oob_db_batch_seconds", kind),
                               delta("oob_db_batch_queue_seconds", kind))
        if not rows or not rows["count"]:
            continue
        kinds[kind] = {
            "statements_per_s": round(rows["count"] / seconds, 1), "rows_per_statement": round(rows["sum"] / rows["count"], 1),
            "statement_p50_ms_at_most": histogram_quantile(commit["buckets"], 0.5),
            "statement_p99_ms_at_most": histogram_quantile(commit["buckets"], 0.99),
            "statements_over_10_ms": round(over(commit, 0.01), 4),
            "statement_mean_ms": round(1000 * commit["sum"] / commit["count"], 2),
            "queue_p99_ms_at_most": histogram_quantile(queue["buckets"], 0.99),
            "requests_queued_over_10_ms": round(over(queue, 0.01), 4),
        }
    return {"engine_request_duration": routes, "group_commit": kinds,
            "database": database_during(db_before, db_after, seconds), "cpu": cpu_during(cpu_before, cpu_after)}


def describe_time(scenario, breakdown):
    parts = ["%s answered by the engine: p99 <= %s ms, %.2f %% over 10 ms, %.2f %% over 25 ms" % (
                 route, r["p99_ms_at_most"], 100 * r["over_10_ms"], 100 * r["over_25_ms"])
             for route, r in breakdown.get("engine_request_duration", {}).items()]
    parts += ["%s: %.0f statements/s of %.1f rows, send to commit p50 <= %s ms p99 <= %s ms (%.1f %% over 10 ms),"
             " wait to be sent p99 <= %s ms (%.1f %% of requests over 10 ms)" % (
                 kind, k["statements_per_s"], k["rows_per_statement"], k["statement_p50_ms_at_most"], k["statement_p99_ms_at_most"],
                 100 * k["statements_over_10_ms"], k["queue_p99_ms_at_most"], 100 * k["requests_queued_over_10_ms"])
             for kind, k in breakdown["group_commit"].items()]
    db = breakdown["database"]
    parts.append("PostgreSQL: %d checkpoints, %.1f MB of WAL/s (%s full-page images), %d WAL syncs/s" % (
        db["checkpoints"], db["wal_mb_per_s"],
        "%.0f %% of records" % (100 * db["full_page_image_share_of_wal_records"]) if db["full_page_image_share_of_wal_records"] is not None else "no",
        db["wal_syncs_per_s"]))
    cpu = breakdown.get("cpu")
    if cpu:
        parts.append("CPU (both cores): busy %.0f %%, idle %.0f %%, iowait %.0f %%, stolen by the hypervisor %.1f %%" % (
            100 * cpu["busy_share"], 100 * cpu["idle_share"], 100 * cpu["iowait_share"], 100 * cpu["steal_share"]))
    log("%-12s during the latency run: %s" % (scenario, "; ".join(parts)))


def seed_pending(prefix, count, state="PENDING"):
    reason = "NULL" if state in ("PENDING", "AUTHENTICATED") else "'expired'"
    psql("""insert into authentications (issuer_id, authentication_id, consumer_id, card_id, pan_suffix, acs_transaction_id,
                                         merchant_name, amount, currency_code, state, reason, deadline)
            select '%s', '%s' || g, 'bench-consumer', 'card-1', '1234', '%s' || g, 'Books & Co', '78999', 'EUR', '%s', %s,
                   now() + interval '1 hour'
            from generate_series(1, %d) g on conflict do nothing""" % (ISSUER, prefix, prefix, state, reason, count))


def wrk(script, url, connections, args, seconds=None):
    threads = max(1, min(2, connections))
    command = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % (seconds or SECONDS), "--latency", "--timeout", "5s"]
    if script:
        command += ["-s", os.path.join(ROOT, "bench", "wrk", script), url, "--"] + args
    else:
        command += [url]
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OOB_WRK_DIR=os.path.join(ROOT, "bench", "wrk")))
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def latency(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, text, re.M)
        if not m:
            return None
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "p50_ms": latency(50), "p99_ms": latency(99), "errors": errors, "threads": threads}


def pgbench_command(files, connections, seconds):
    command = [os.path.join(PG_BINDIR, "pgbench"), "-n", "-M", "prepared", "-c", str(connections),
               "-j", str(max(1, min(2, connections))), "-T", str(seconds)]
    for f in files:
        command += ["-f", f]
    # Planned as the engine plans these statements (PostgresStatement.Planning.generic): once
    # per session. With PostgreSQL's default the batched decision is planned again on every
    # execution, which would handicap the reference, not measure the engine.
    env = dict(os.environ, PGOPTIONS=(os.environ.get("PGOPTIONS", "") + " -c plan_cache_mode=force_generic_plan").strip())
    return command, env


def pgbench_tps(out):
    """The rate line of a finished pgbench run (its match), or the bench stops with pgbench's output."""
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    if not m:
        raise SystemExit("pgbench failed:\n" + out.stdout + out.stderr)
    return m


def pgbench(files, connections):
    command, env = pgbench_command(files, connections, SECONDS)
    out = subprocess.run(command + ["-r", DATABASE_URL], capture_output=True, text=True, env=env)
    m = pgbench_tps(out)
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    return {"tps": float(m.group(1)), "latency_avg_ms": float(latency.group(1)) if latency else None}


# The first seconds of a paced pgbench run are left out of its latencies: each new connection
# prepares and plans its statements on its first transaction (150-170 ms each on 2026-12-02,
# 64 of them at once), which the engine's long-lived connections did before its runs.
PGBENCH_PACED_WARMUP = 2


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else None


def pgbench_paced(files, connections, rate):
    """PostgreSQL alone at a given rate: pgbench -R (Poisson arrivals, open loop) with a
    per-transaction log. Returns the rate reached and the p50/p99 of each transaction's latency,
    both from its scheduled start (what a request arriving on schedule waits: pgbench's own
    definition under -R, the queue in front of a busy connection included) and from its actual
    start (the database's service time alone)."""
    directory = tempfile.mkdtemp(prefix="pgbench-paced-", dir=os.path.join(ROOT, ".tmp"))
    try:
        command, env = pgbench_command(files, connections, PACED_SECONDS + PGBENCH_PACED_WARMUP)
        command += ["-R", "%.0f" % rate, "-l", "--log-prefix", os.path.join(directory, "log")]
        out = subprocess.run(command + [DATABASE_URL], capture_output=True, text=True, env=env)
        pgbench_tps(out)
        # Log lines: client transaction_no latency_us script_no epoch_s epoch_us schedule_lag_us
        rows = []
        for name in os.listdir(directory):
            with open(os.path.join(directory, name)) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 7 and all(x.isdigit() for x in (fields[2], fields[4], fields[5], fields[6])):
                        rows.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1000.0, int(fields[6]) / 1000.0))
        if not rows:
            raise SystemExit("pgbench wrote no transaction log:\n" + out.stdout + out.stderr)
        start = min(r[0] for r in rows) + PGBENCH_PACED_WARMUP
        kept = [r for r in rows if r[0] >= start]
        span = max(r[0] for r in kept) - start if kept else 0
        scheduled = [r[1] for r in kept]
        service = [r[1] - r[2] for r in kept]
        return {"offered_rps": round(rate), "connections": connections, "rps": len(kept) / span if span else None,
                "p50_ms": percentile(scheduled, 0.5), "p99_ms": percentile(scheduled, 0.99),
                "service_p50_ms": percentile(service, 0.5), "service_p99_ms": percentile(service, 0.99),
                "transactions": len(kept), "warmup_seconds_left_out": PGBENCH_PACED_WARMUP}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pgbench_scripts():
    """The engine's own statements (from `oob-bench sql`), one transaction per request."""
    sql = json.loads(subprocess.run([BENCH, "sql"], capture_output=True, text=True, check=True).stdout)
    directory = os.path.join(ROOT, ".tmp", "pgbench")
    os.makedirs(directory, exist_ok=True)
    def substitute(text, values):
        for index in sorted(values, reverse=True):
            text = text.replace("$%d" % index, values[index])
        return text.strip() + ";\n"
    authenticate = "\\set r random(1, 9000000000000000)\n" + substitute(sql["authenticate"], {
        1: "'%s'" % ISSUER, 2: "('pgb-' || :r)", 3: "'bench-consumer'", 4: "'card-1'", 5: "'1234'", 6: "('pgb-' || :r)",
        7: "'Books & Co'", 8: "'78999'", 9: "'EUR'", 10: "'3600'", 11: "'d1'", 12: "NULL"})
    poll = "\\set n random(1, 20000)\n" + substitute(sql["poll"], {1: "'%s'" % ISSUER, 2: "('poll-' || :n)"})
    decision = "\\set n random(1, 300000)\n" + substitute(sql["decision"], {
        1: "array['%s']" % ISSUER, 2: "array['pgd-' || :n]", 3: "array['bench-app']", 4: "array['AUTHENTICATED']",
        5: "array[null]::text[]", 6: "array['app/bench-app']"})
    paths = {}
    for name, text in [("authenticate", authenticate), ("poll", poll), ("decision", decision)]:
        paths[name] = os.path.join(directory, name + ".sql")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def main():
    if sys.argv[1] == "instructions":
        # scripts/bench instructions: the instruction counts alone (bench/results.json keeps the
        # last full run's).
        counts = instructions_per_request()
        with open(sys.argv[2], "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "instructions_per_request": counts}, f, indent=2)
        print(json.dumps(counts))
        return
    output = sys.argv[1]
    micro = json.load(open(sys.argv[2])) if len(sys.argv) > 2 and os.path.exists(sys.argv[2]) else {}
    results = {"micro": micro.get("benchmarks", []),"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds_per_run": SECONDS, "rounds_per_level": ROUNDS, "seconds_per_latency_run": PACED_SECONDS,
               "machine": "%d cores, %s" % (os.cpu_count(), open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" \t:")),
               "load": {}, "peaks": {}, "memory_mib": {}}
    scripts = pgbench_scripts()
    psql("delete from outbox; alter table authentications disable trigger user; alter table transitions disable trigger user;"
         " delete from transitions; delete from authentications; alter table authentications enable trigger user;"
         " alter table transitions enable trigger user")
    psql("vacuum full authentications")

    # First, on the empty database: under valgrind the engine runs some 50 times slower, and its
    # start-up recovery of the later runs' PENDING rows would outlast the statement timeout.
    results["instructions_per_request"] = instructions_per_request()

    # Memory: idle, then with 100,000 PENDING loaded at start-up.
    engine = Engine()
    time.sleep(1)
    results["memory_mib"]["idle"] = round(rss_kib(engine.process.pid) / 1024, 1)
    engine.stop()
    seed_pending("mem-", 100000)
    engine = Engine()
    results["memory_mib"]["100k_pending"] = round(rss_kib(engine.process.pid) / 1024, 1)
    # The same 100,000 once each has also been polled: then every one sits in the poll cache too,
    # as in production, where D1 polls what it created.
    d1, app = engine.token("d1"), engine.token("app")
    api = "http://127.0.0.1:%d" % engine.api
    wrk("warm.lua", api, 16, ["mem", d1, ISSUER, "bench-consumer", "2", "100000", app, "mem-"], 10)
    results["memory_mib"]["100k_pending_polled"] = round(rss_kib(engine.process.pid) / 1024, 1)
    results["memory_mib"]["100k_pending_polled_cached_records"] = cached_records(engine)
    # 2,000 open keep-alive connections, each having made one request.
    sockets = []
    for _ in range(2000):
        s = socket.create_connection(("127.0.0.1", engine.ops))
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        sockets.append(s)
    for s in sockets:
        s.recv(4096)
    time.sleep(0.5)
    results["memory_mib"]["2000_connections"] = round(rss_kib(engine.process.pid) / 1024, 1)
    for s in sockets:
        s.close()
    log("memory: %s" % results["memory_mib"])

    results["http_trivial_route"] = wrk(None, "http://127.0.0.1:%d/health/live" % engine.ops, 64, [])
    results["http_trivial_route_nginx"] = nginx_trivial_route()
    log("HTTP layer, trivial route: %.0f requests/s (nginx, same route and wrk: %s)" % (
        results["http_trivial_route"]["rps"],
        "%.0f requests/s" % results["http_trivial_route_nginx"]["rps"] if results["http_trivial_route_nginx"] else "not measured"))

    # Poll targets: 10,000 PENDING and 10,000 final.
    seed_pending("poll-", 10000)
    psql("""insert into authentications (issuer_id, authentication_id, consumer_id, state, reason, deadline)
            select '%s', 'poll-' || g, 'bench-consumer', 'AUTHENTICATION_FAILED', 'expired', now()
            from generate_series(10001, 20000) g on conflict do nothing""" % ISSUER)
    seed_pending("pgd-", 300000)
    vacuum_tables(checkpoint=True)

    def reference_files(scenario):
        if scenario == "mix":
            return [scripts["authenticate"] + "@1", scripts["poll"] + "@5", scripts["decision"] + "@1"]
        return [scripts[scenario]]

    run = 0
    for scenario in ["authenticate", "poll", "decision", "mix"]:
        if scenario == "poll":
            warm = wrk("warm.lua", api, 16, ["warm", d1, ISSUER, "bench-consumer", "2", "20000", app], 5)
            log("poll warm-up: %.0f polls over the 20,000 targets" % (warm["rps"] * 5))
        for level in LEVELS:
            # ROUNDS rounds of pgbench then the engine, each after a checkpoint; each side's best
            # round counts. This machine's speed drifts within a minute: a slow moment in one
            # run would otherwise decide the ratio, and taking the best of each side treats
            # both alike.
            references, engine_rounds = [], []
            for _ in range(ROUNDS):
                run += 1
                prefix = "r%d%s" % (run, scenario[:1])
                psql("checkpoint")
                references.append(pgbench(reference_files(scenario), level))
                if scenario in ("decision", "mix"):
                    # Enough fresh PENDING ids for 30,000 decisions/s (the mix: 10,000/s).
                    seed_pending(prefix + "-", (30000 if scenario == "decision" else 10000) * SECONDS)
                psql("checkpoint")
                threads = max(1, min(2, level))
                engine_rounds.append(wrk(scenario + ".lua", api, level, [prefix, d1, ISSUER, "bench-consumer", str(threads), "20000", app]))
            reference = max(references, key=lambda r: r["tps"])
            measured = dict(max(engine_rounds, key=lambda r: r["rps"]), errors=sum(r["errors"] for r in engine_rounds))
            ratio = measured["rps"] / reference["tps"] if reference["tps"] else None
            results["load"]["%s@%d" % (scenario, level)] = {
                "engine": measured, "pgbench": reference, "pgbench_connections": level, "ratio": ratio,
                "rounds": {"engine_rps": [r["rps"] for r in engine_rounds], "pgbench_tps": [r["tps"] for r in references]}}
            log("%-12s c=%-3d engine %8.0f/s p50 %6.2f ms p99 %6.2f ms errors %d | pgbench %8.0f/s | ratio %.2f"
                " | rounds: engine %s, pgbench %s" % (
                scenario, level, measured["rps"], measured["p50_ms"] or 0, measured["p99_ms"] or 0,
                measured["errors"], reference["tps"], ratio or 0,
                "/".join("%.0f" % r["rps"] for r in engine_rounds), "/".join("%.0f" % r["tps"] for r in references)))
        # The targets compare peaks: the engine's best throughput over the connection counts
        # against pgbench's best, both from this run.
        runs = [results["load"]["%s@%d" % (scenario, level)] for level in LEVELS]
        engine_peak = max(r["engine"]["rps"] for r in runs)
        pgbench_peak = max(r["pgbench"]["tps"] for r in runs)
        # p99 at 70 % of the engine's peak: PACED_CONNECTIONS connections, each pausing so that
        # together they offer about that rate (closed loop: wrk's delay hook; the latency is
        # each request's own, from its send to its answer).
        run += 1
        prefix = "r%d%s" % (run, scenario[:1])
        if scenario in ("decision", "mix"):
            # Fresh PENDING ids for each probe and for the run below (a decision on a decided id
            # would measure the refusal path instead).
            final_ids = 100000 if scenario == "decision" else 30000
            for tag, count in [(tag, final_ids // 3) for tag in PROBE_TAGS] + [("", final_ids)]:
                seed_pending(prefix + tag + "-", count)
        # As pgbench does before its runs: vacuumed tables, so that an autovacuum of the rows the
        # peak runs just wrote does not land in the middle of the latency measurement.
        vacuum_tables(checkpoint=True)
        target = 0.7 * engine_peak
        connections = PACED_CONNECTIONS
        threads = max(1, min(2, connections))
        cycle_ms = connections / target * 1000.0
        def measured_run(pause_ms, tag=""):
            # Vacuumed again right before each measured run: the probes and any earlier run wrote
            # enough rows for autovacuum to start on authentications and transitions in the
            # middle of the next ten seconds (seen on 2026-12-02: a p99 went from about 9 ms to
            # 29.75 ms while both tables were auto-vacuumed and analysed during it).
            vacuum_tables()
            histograms, database, cpu = batch_histograms(engine), database_activity(), machine_activity()
            measured = paced_run(pause_ms, PACED_SECONDS, tag)
            try:
                cpu_after = machine_activity()
                measured["where_the_time_went"] = where_the_time_went(
                    scenario, histograms, batch_histograms(engine), database, database_activity(), PACED_SECONDS, cpu, cpu_after)
                describe_time(scenario, measured["where_the_time_went"])
            except Exception as error:
                # A side measurement: the run counts without it.
                log("%-12s where the time went: not measured (%s)" % (scenario, error))
            return measured
        def paced_run(pause_ms, seconds=None, tag=""):
            return wrk("paced.lua", api, connections, [prefix + tag, d1, ISSUER, "bench-consumer", str(threads), "20000", app,
                                                       "%.3f" % pause_ms, scenario], seconds)
        # Calibrate with short probes: the first pauses for half the cycle; each next one pauses
        # for what the previous one's latency leaves of the cycle (the latency grows with the
        # load, and wrk's delay hook counts whole milliseconds of its event loop). Done once a
        # probe lands within 7 % of the target rate, after four at most.
        # If none lands, the pause is interpolated between the probes on either side of the
        # target (the rate falls as the pause grows), or taken from the nearest probe.
        def pause_between(probes):
            above = [p for p in probes if p[1] >= target]
            below = [p for p in probes if p[1] < target]
            if above and below:
                (p1, r1), (p2, r2) = min(above, key=lambda p: p[1]), max(below, key=lambda p: p[1])
                return p1 + (p2 - p1) * (r1 - target) / (r1 - r2) if r1 != r2 else p1
            return min(probes, key=lambda p: abs(p[1] - target))[0]
        pause_ms = cycle_ms / 2
        probes = []
        for tag in PROBE_TAGS:
            probe = paced_run(pause_ms, 2, tag)
            if not probe["rps"]:
                break
            probes.append((pause_ms, probe["rps"]))
            log("%-12s probe: pause %.3f ms -> %.0f/s (target %.0f/s)" % (scenario, pause_ms, probe["rps"], target))
            if abs(probe["rps"] / target - 1) <= 0.07:
                break
            latency_ms = max(0.0, connections / probe["rps"] * 1000.0 - pause_ms)
            pause_ms = max(0.0, cycle_ms - latency_ms)
        else:
            if probes:
                pause_ms = pause_between(probes)
        # Longer than the peak runs: a p99 over a few seconds moves with any single hiccup of
        # the shared machine.
        paced = measured_run(pause_ms)
        # Two-second probes can mislead: they start cold, right after the checkpoint (the first
        # writes after one are slower), so a ten-second run with their pause tends to land above
        # the target, at 74-77 % of the peak instead of 70 %. When the run lands more than 5 %
        # off the target rate, it is made again (twice at most), on fresh ids, with the pause
        # corrected from the run itself, or between runs either side of the target. Every run
        # made is kept in results.json.
        attempts = []
        for tag in RERUN_TAGS:
            if not paced["rps"] or abs(paced["rps"] / target - 1) <= RERUN_TOLERANCE:
                break
            log("%-12s latency run: pause %.3f ms -> %.0f/s, more than %d %% off %.0f/s: again" % (
                scenario, pause_ms, paced["rps"], 100 * RERUN_TOLERANCE, target))
            attempts.append({"pause_ms": round(pause_ms, 3), "rps": paced["rps"], "p50_ms": paced["p50_ms"], "p99_ms": paced["p99_ms"]})
            points = [(a["pause_ms"], a["rps"]) for a in attempts]
            if any(r >= target for _, r in points) and any(r < target for _, r in points):
                # Runs on both sides of the target: between them (the cold probes left out).
                pause_ms = pause_between(points)
            else:
                # As for the probes, from the run's own latency at its rate.
                latency_ms = max(0.0, connections / paced["rps"] * 1000.0 - pause_ms)
                pause_ms = max(0.0, cycle_ms - latency_ms)
            if scenario in ("decision", "mix"):
                seed_pending(prefix + tag + "-", final_ids)
            paced = measured_run(pause_ms, tag)
        # The same question put to PostgreSQL alone: pgbench at 70 % of its own peak, with the
        # connection count of that peak, on freshly vacuumed tables like the engine's run.
        pgbench_level = max(runs, key=lambda r: r["pgbench"]["tps"])
        vacuum_tables()
        database, cpu = database_activity(), machine_activity()
        reference_paced = pgbench_paced(reference_files(scenario), pgbench_level["pgbench_connections"], 0.7 * pgbench_peak)
        try:
            # Over the whole pgbench run (its first seconds included), for comparison with the engine's.
            reference_paced["cpu"] = cpu_during(cpu, machine_activity())
            reference_paced["database"] = database_during(database, database_activity(), PACED_SECONDS + PGBENCH_PACED_WARMUP)
        except Exception as error:
            log("%-12s pgbench's database activity: not measured (%s)" % (scenario, error))
        log("%-12s pgbench alone at 70%% of its peak (%.0f/s offered, %d connections): %.0f/s, p50 %.2f ms p99 %.2f ms"
            " (service time p50 %.2f ms p99 %.2f ms)" % (
            scenario, 0.7 * pgbench_peak, reference_paced["connections"], reference_paced["rps"] or 0, reference_paced["p50_ms"],
            reference_paced["p99_ms"], reference_paced["service_p50_ms"], reference_paced["service_p99_ms"]))
        if reference_paced.get("database"):
            db = reference_paced["database"]
            log("%-12s pgbench alone, PostgreSQL: %d checkpoints, %.1f MB of WAL/s, %d WAL syncs/s; CPU stolen by the hypervisor %.1f %%" % (
                scenario, db["checkpoints"], db["wal_mb_per_s"], db["wal_syncs_per_s"], 100 * reference_paced["cpu"]["steal_share"]))
        results["peaks"][scenario] = {
            "engine_rps": engine_peak, "pgbench_tps": pgbench_peak, "ratio": engine_peak / pgbench_peak if pgbench_peak else None,
            "target_ratio": TARGET_RATIOS[scenario],
            "at_70_percent": {"offered_target_rps": round(target), "connections": connections, "pause_ms": round(pause_ms, 3),
                              "rps": paced["rps"], "fraction_of_peak": paced["rps"] / engine_peak if engine_peak else None,
                              "p50_ms": paced["p50_ms"], "p99_ms": paced["p99_ms"], "errors": paced["errors"],
                              "where_the_time_went": paced.get("where_the_time_went"),
                              "calibration": [{"pause_ms": round(p, 3), "rps": r} for p, r in probes],
                              "runs_off_target": attempts},
            "pgbench_at_70_percent": reference_paced,
        }
        log("%-12s peak engine %8.0f/s vs pgbench %8.0f/s = %.2f (target %.1f) | at %.0f%% of peak: p50 %.2f ms p99 %.2f ms" % (
            scenario, engine_peak, pgbench_peak, results["peaks"][scenario]["ratio"] or 0, TARGET_RATIOS[scenario],
            100 * (paced["rps"] / engine_peak if engine_peak else 0), paced["p50_ms"] or 0, paced["p99_ms"] or 0))
    engine.stop()

    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print("%-14s %5s %12s %9s %9s %12s %7s" % ("scenario", "conns", "engine/s", "p50 ms", "p99 ms", "pgbench/s", "ratio"))
    for key, value in results["load"].items():
        scenario, level = key.split("@")
        e = value["engine"]
        print("%-14s %5s %12.0f %9.2f %9.2f %12.0f %7.2f" % (scenario, level, e["rps"], e["p50_ms"] or 0, e["p99_ms"] or 0,
                                                            value["pgbench"]["tps"], value["ratio"] or 0))
    print()
    print("%-14s %12s %12s %7s %7s %14s %9s %9s | %-28s" % ("peak", "engine/s", "pgbench/s", "ratio", "target", "at 70%: req/s",
                                                              "p50 ms", "p99 ms", "pgbench at 70%: tx/s, p50/p99"))
    for scenario, peak in results["peaks"].items():
        paced, reference = peak["at_70_percent"], peak["pgbench_at_70_percent"]
        print("%-14s %12.0f %12.0f %7.2f %7.1f %14.0f %9.2f %9.2f | %8.0f %8.2f %8.2f" % (
              scenario, peak["engine_rps"], peak["pgbench_tps"], peak["ratio"] or 0, peak["target_ratio"], paced["rps"],
              paced["p50_ms"] or 0, paced["p99_ms"] or 0, reference["rps"] or 0, reference["p50_ms"], reference["p99_ms"]))
    print()
    print("At about 70 %: requests the engine itself took over 10 ms to answer (its own clock, arrival to answer), the group commit,"
          " and the CPU")
    for scenario, peak in results["peaks"].items():
        breakdown = peak["at_70_percent"].get("where_the_time_went")
        if not breakdown:
            continue
        routes = ", ".join("%s %.2f %% (p99 <= %s ms)" % (route, 100 * r["over_10_ms"], r.get("p99_ms_at_most"))
                           for route, r in breakdown.get("engine_request_duration", {}).items())
        kinds = ", ".join("%s %.1f rows, commit p99 <= %s ms" % (kind, k["rows_per_statement"], k["statement_p99_ms_at_most"])
                          for kind, k in breakdown["group_commit"].items())
        cpu = breakdown.get("cpu") or {}
        print("%-14s wrk p99 %6.2f ms | engine over 10 ms: %s | %s | CPU idle %s, stolen %s" % (
            scenario, peak["at_70_percent"]["p99_ms"] or 0, routes, kinds or "no statements",
            "%.0f %%" % (100 * cpu["idle_share"]) if cpu else "-", "%.1f %%" % (100 * cpu["steal_share"]) if cpu else "-"))
    nginx = results["http_trivial_route_nginx"]
    print("HTTP trivial route (64 connections): %.0f requests/s%s" % (
        results["http_trivial_route"]["rps"], "; nginx on the same route: %.0f requests/s" % nginx["rps"] if nginx else ""))
    if results["instructions_per_request"]:
        print("Instructions per request (callgrind, user space): trivial route %(trivial_route)d, cached poll %(cached_poll)d"
              % results["instructions_per_request"])
    for item in results["micro"]:
        print("%-44s %10.2f %s" % (item["name"], item["value"], item["unit"]))
    print("RSS: idle %(idle)s MiB, 100,000 PENDING %(100k_pending)s MiB (all polled once, %(100k_pending_polled_cached_records)s in the"
          " poll cache: %(100k_pending_polled)s MiB), 2,000 connections %(2000_connections)s MiB" % results["memory_mib"])


if __name__ == "__main__":
    main()
