#!/usr/bin/env python3
"""Control-plane write benchmark: commit latency, committed writes/s and failover time for
1- and 3-member Lattice clusters on this machine, measured like ../shared/bench/etcd-baseline.sh
measures etcd (Python requests.Session over HTTP keep-alive, separate client processes), so
the two can be compared.

A write is `POST /api/v1/allocations` (one Raft entry, fsynced on a quorum before the 201).

Usage: bench/raft-bench.py [--binary target/release/lattice] [--puts 2000] [--conc-puts 250]
                           [--failover-trials 5] [--json out.json]
Only talks to 127.0.0.1; stops every process it started.
"""
import argparse, json, multiprocessing as mp, os, shutil, signal, socket, statistics, subprocess
import sys, tempfile, time

import requests

SECRET = "bench-secret"
# The cluster is bootstrapped with this admin token (admins are not submission-rate-limited).
ADMIN = "lat_bench_admin_token_0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
FAST_ENV = {}  # defaults: heartbeat 250 ms, election 1-2 s (what operators get)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Member:
    def __init__(self, binary, base, mid, port, args):
        self.id, self.port = mid, port
        self.url = f"http://127.0.0.1:{port}"
        data = os.path.join(base, f"m{mid}")
        env = dict(os.environ, RUST_LOG="warn", LATTICE_SERVER__CLUSTER_SECRET=SECRET, **FAST_ENV)
        self.log = open(os.path.join(base, f"m{mid}.log"), "ab")
        self.proc = subprocess.Popen(
            [binary, "server", "--node-id", str(mid), "--api-addr", f"127.0.0.1:{port}",
             "--data-dir", data] + args, env=env, stdout=self.log, stderr=self.log)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait(cond, secs, what):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def status(url):
    r = requests.get(f"{url}/api/v1/raft/status", headers=AUTH, timeout=1)
    if r.status_code == 401:
        # A new cluster has no tokens: bootstrap it (409 once done).
        requests.post(f"{url}/api/v1/acl/bootstrap", json={"token": ADMIN}, timeout=5)
        return {}
    return r.json()


def start_cluster(binary, base, n):
    ports = [free_port() for _ in range(n)]
    peers = ",".join(f"{i + 1}=http://127.0.0.1:{p}" for i, p in enumerate(ports))
    ms = [Member(binary, base, i + 1, p, ["--bootstrap", "--peers", peers]) for i, p in enumerate(ports)]
    wait(lambda: status(ms[0].url).get("leader") is not None
         and all(status(m.url).get("leader") for m in ms), 30, "a leader")
    return ms


def leader_of(ms):
    lid = wait(lambda: status(ms[0].url).get("leader"), 30, "leader id")
    return next(m for m in ms if m.id == lid)


BODY = {"command": ["true"], "name": "bench"}


def put_loop(url, count, out_q):
    s = requests.Session()
    s.headers.update(AUTH)
    lat = []
    for _ in range(count):
        t = time.perf_counter()
        r = s.post(f"{url}/api/v1/allocations", json=BODY)
        lat.append(time.perf_counter() - t)
        if r.status_code != 201:
            raise SystemExit(f"write failed: {r.status_code} {r.text}")
    out_q.put(lat)


def concurrent(url, clients, per_client):
    q = mp.Queue()
    ps = [mp.Process(target=put_loop, args=(url, per_client, q)) for _ in range(clients)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    lats = [x for _ in ps for x in q.get()]
    for p in ps:
        p.join()
    return len(lats) / (time.perf_counter() - t), lats


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def measure(binary, n, args):
    base = tempfile.mkdtemp(prefix=f"lattice-bench-{n}m-")
    ms = start_cluster(binary, base, n)
    try:
        leader = leader_of(ms)
        # warm-up
        concurrent(leader.url, 1, 50)
        tput1, lat = concurrent(leader.url, 1, args.puts)
        res = {"members": n, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
               "writes_per_s_1": tput1}
        for c in (16, 64):
            tput, _ = concurrent(leader.url, c, args.conc_puts)
            res[f"writes_per_s_{c}"] = tput
        return res
    finally:
        for m in ms:
            m.stop()
        shutil.rmtree(base, ignore_errors=True)


def failover(binary, trials):
    times = []
    for _ in range(trials):
        base = tempfile.mkdtemp(prefix="lattice-bench-fo-")
        ms = start_cluster(binary, base, 3)
        try:
            leader = leader_of(ms)
            requests.post(f"{leader.url}/api/v1/allocations", json=BODY, headers=AUTH, timeout=5)
            others = [m for m in ms if m is not leader]
            sessions = [requests.Session() for _ in others]
            for s in sessions:
                s.headers.update(AUTH)
            t0 = time.perf_counter()
            leader.kill()
            done = None
            while done is None and time.perf_counter() - t0 < 30:
                for s, m in zip(sessions, others):
                    try:
                        r = s.post(f"{m.url}/api/v1/allocations", json=BODY, timeout=2)
                        if r.status_code == 201:
                            done = time.perf_counter() - t0
                            break
                    except requests.RequestException:
                        pass
                time.sleep(0.005)
            if done is None:
                raise SystemExit("no write succeeded within 30 s of the leader kill")
            times.append(done)
        finally:
            for m in ms:
                m.stop()
            shutil.rmtree(base, ignore_errors=True)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/lattice")
    ap.add_argument("--puts", type=int, default=2000)
    ap.add_argument("--conc-puts", type=int, default=250)
    ap.add_argument("--failover-trials", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: cargo build --release first")
    rows = [measure(args.binary, n, args) for n in (1, 3)]
    fo = failover(args.binary, args.failover_trials)
    print(f"{'members':>7} {'p50 ms':>8} {'p99 ms':>8} {'w/s 1':>8} {'w/s 16':>8} {'w/s 64':>8}")
    for r in rows:
        print(f"{r['members']:>7} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['writes_per_s_1']:>8.0f} "
              f"{r['writes_per_s_16']:>8.0f} {r['writes_per_s_64']:>8.0f}")
    if fo:
        print(f"failover (SIGKILL leader -> first 201), 3 members: median {statistics.median(fo):.2f} s "
              f"(min {min(fo):.2f}, max {max(fo):.2f}, n={len(fo)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "failover_s": fo}, f, indent=2)


if __name__ == "__main__":
    main()
