#!/usr/bin/env python3
"""Probes every endpoint of the bench contract while Redis fails, for stack-redis-outage.sh.

usage: outage-probe.py BASE_URL PHASES_FILE OUT_FILE

One thread per endpoint sends its requests one after another (5 ms apart), each bounded by
10 s, and records "phase endpoint status latency_ms seconds_since_fault_end" lines. The phase
(before / during / after) is read from PHASES_FILE, which the script rewrites as it goes; the
probe ends when it reads "stop". /session uses the cookie of a /login made first; when its
session is gone (a Redis restart loses it: 401), the thread logs in again, as a user would.
"""
import http.client
import sys
import threading
import time
import urllib.parse

ENDPOINTS = [
    ("hello", "GET", "/hello"),
    ("login", "POST", "/login"),
    ("session", "GET", "/session"),
    ("limited", "GET", "/limited"),
    ("cached", "GET", "/cached/outage"),
    ("json", "GET", "/json"),
]


def main():
    base, phases_file, out_file = sys.argv[1:4]
    url = urllib.parse.urlsplit(base)
    lock = threading.Lock()
    out = open(out_file, "w")
    state = {"phase": "before", "fault_end": None}

    def watch_phases():
        while True:
            try:
                with open(phases_file) as f:
                    phase = f.read().strip() or "before"
            except OSError:
                phase = "before"
            if phase == "after" and state["fault_end"] is None:
                state["fault_end"] = time.monotonic()
            state["phase"] = phase
            if phase == "stop":
                return
            time.sleep(0.005)

    def connect():
        return http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def request(conn, method, path, headers):
        start = time.monotonic()
        try:
            conn.request(method, path, headers=headers)
            res = conn.getresponse()
            res.read()
            status, cookie = res.status, res.getheader("set-cookie")
        except (OSError, http.client.HTTPException):
            conn.close()
            status, cookie = 0, None
        return status, (time.monotonic() - start) * 1000, cookie, start

    def login(conn):
        status, _, cookie, _ = request(conn, "POST", "/login", {})
        return cookie.split(";")[0] if status == 200 and cookie else None

    def run(name, method, path):
        conn = connect()
        cookie = login(conn) if name == "session" else None
        n = 0
        while state["phase"] != "stop":
            phase = state["phase"]
            # 16 API keys in turn: /limited's quota (100/s per key) is never reached.
            n += 1
            headers = {"x-api-key": f"outage-{n % 16}"}
            if cookie:
                headers["Cookie"] = cookie
            status, ms, _, start = request(conn, method, path, headers)
            if status == 0:
                conn = connect()
            end = state["fault_end"]
            since = start - end if end is not None else float("nan")
            with lock:
                out.write(f"{phase} {name} {status} {ms:.3f} {since:.3f}\n")
            if name == "session" and status in (0, 401) and phase != "during":
                cookie = login(conn) or cookie
            time.sleep(0.005)

    threads = [threading.Thread(target=watch_phases)]
    threads += [threading.Thread(target=run, args=e) for e in ENDPOINTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


if __name__ == "__main__":
    main()
