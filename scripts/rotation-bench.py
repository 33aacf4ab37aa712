#!/usr/bin/env python3
"""Lines written vs counted while a log file is rotated (rename-and-create) every INTERVAL.

Usage: scripts/rotation-bench.py PATH/TO/tikv-health-exporter [SECONDS] [LINES_PER_S] [INTERVAL...]
Defaults: 10 s per run, 2000 lines/s, intervals 1s 200ms 40ms.

For each interval: starts the exporter following one file (PD pointed at a closed loopback port:
only the log source matters), appends numbered TiKV `became leader` lines at a steady rate and
renames the file to `tikv.log.<n>` then creates a new one every INTERVAL, for SECONDS. Then it
waits until the exporter's count stops moving (or equals what was written) and prints one row:
written, counted (`tikv_leadership_changes_total{event="became_leader"}`), reported lost
(`tikv_log_gaps_total`, places where lines may have been lost), the difference, and the CPU time
the exporter used (user + system, whole process, from /proc). Loopback only;
everything is removed at the end.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LINE = ('[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] ["became leader at term 6"] '
        '[term=6] [region_id=44] [seq={}]\n')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    def total(name, extra=""):
        pat = re.compile(r'^' + name + r'\{([^}]*)\} (\S+)$', re.M)
        return sum(float(v) for labels, v in pat.findall(text)
                   if 'source="file:bench"' in labels and extra in labels)
    up = re.search(r'^tikv_health_exporter_source_up\{source="file:bench"\} (\S+)$', text, re.M)
    return (total("tikv_leadership_changes_total", 'event="became_leader"'),
            total("tikv_log_gaps_total"), bool(up and float(up.group(1)) == 1))


def parse_interval(s):
    return float(s[:-2]) / 1000 if s.endswith("ms") else float(s.rstrip("s"))


def run(binary, seconds, rate, interval):
    work = tempfile.mkdtemp(prefix="rotation-bench-")
    log = os.path.join(work, "tikv.log")
    open(log, "w").close()
    cfg = os.path.join(work, "config.yml")
    with open(cfg, "w") as f:
        f.write(f'pd:\n  endpoints: ["http://127.0.0.1:{free_port()}"]\n'
                f'logs:\n  files:\n    - path: {log}\n      name: bench\n      store: "1"\n')
    port = free_port()
    proc = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "stderr"), "w"))
    try:
        deadline = time.monotonic() + 60
        # Up once the source has opened the (empty) file: only write after that.
        while not (got := scrape(port)) or not got[2]:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("exporter did not start: " + open(os.path.join(work, "stderr")).read())
            time.sleep(0.05)
        seq, rotations = 0, 0
        out = open(log, "a")
        start = time.monotonic()
        next_rot = start + interval
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * rate)
            if due > seq:
                out.write("".join(LINE.format(s) for s in range(seq + 1, due + 1)))
                out.flush()
                seq = due
            if now >= next_rot:
                rotations += 1
                out.close()
                os.rename(log, f"{log}.{rotations}")
                out = open(log, "a")
                next_rot += interval
            time.sleep(0.001)
        out.close()
        # Settle: until the count equals what was written, or has not moved for 3 s (max 30 s).
        last, still_since, end = None, time.monotonic(), time.monotonic() + 30
        while time.monotonic() < end:
            got = scrape(port)
            if got and got[0] >= seq:
                break
            if got != last:
                last, still_since = got, time.monotonic()
            elif time.monotonic() - still_since > 3:
                break
            time.sleep(0.1)
        counted, gaps, _ = scrape(port)
        with open(f"/proc/{proc.pid}/stat") as st:
            fields = st.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seq, rotations, int(counted), int(gaps), cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    binary = os.path.realpath(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 2000
    intervals = sys.argv[4:] or ["1s", "200ms", "40ms"]
    print(f"{'rotation every':>14} {'rotations':>9} {'written':>8} {'counted':>8} {'gaps':>5} {'missing':>8}"
          f" {'exporter CPU s':>15}")
    for iv in intervals:
        written, rotations, counted, gaps, cpu = run(binary, seconds, rate, parse_interval(iv))
        print(f"{iv:>14} {rotations:>9} {written:>8} {counted:>8} {gaps:>5} {written - counted:>8}"
              f" {cpu:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
