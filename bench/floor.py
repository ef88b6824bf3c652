"""The floor of a converged-rack plan: one Fabric connection per host running one command, all hosts at once.

Why: no tool that detects a host over SSH can be faster than opening one connection and running its probes once.
This program does exactly that and nothing else (no plugins, no parsing, no planning): each thread opens a Fabric
connection with the host key checked against the lab's ``known_hosts`` (unknown keys refused), runs the detect
probes as **one** shell command, and closes. bench/run.py times it as a separate process, like every other tool, so
the interpreter's start and Fabric's import count here as they do for gpuprov.

Usage (bench/run.py writes the work file)::

    python3 bench/floor.py WORK.json

``WORK.json`` is ``{"known_hosts": PATH, "key": PATH, "hosts": [{"name", "address", "command"}, ...]}``. Exit
status 0 when every host answered, 1 otherwise (each failure printed as ``host: what went wrong``).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any


def run_one(host: dict[str, str], key: str, known_hosts: str, errors: list[str], lock: threading.Lock) -> None:
    """Connect to one host, run its one command, close; record a failure instead of raising."""
    import fabric
    import paramiko

    conn = fabric.Connection(host["address"], user="root", port=22, connect_timeout=10,
                             connect_kwargs={"key_filename": [key], "allow_agent": False, "look_for_keys": False})
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(known_hosts)
    try:
        result = conn.run(host["command"], hide=True, warn=True, pty=False, in_stream=False, timeout=120)
        if not result.stdout:
            with lock:
                errors.append(f"{host['name']}: the command printed nothing (exit {result.exited})")
    except Exception as exc:  # any failure of one host is reported, the others go on
        with lock:
            errors.append(f"{host['name']}: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 bench/floor.py WORK.json", file=sys.stderr)
        return 1
    with open(argv[0], encoding="utf-8") as f:
        work: dict[str, Any] = json.load(f)
    errors: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=run_one, args=(h, work["key"], work["known_hosts"], errors, lock))
               for h in work["hosts"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for line in errors:
        print(line, file=sys.stderr)
    return 1 if errors or any(t.is_alive() for t in threads) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
