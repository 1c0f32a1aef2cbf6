"""Where a request's time goes: py-spy samples a benchmark server under wrk load.

    benchmarks/.venv/bin/python -m benchmarks.profile [--scenario asgi/coatcheck/memory] [--mix rmw]

Starts the scenario's server exactly as the benchmark does, loads it with wrk for
``--duration`` seconds while ``py-spy record`` samples it (idle time excluded), then prints
the share of the busy samples (and µs of CPU per request) by package, by coatcheck function,
and by function on its own (self) and with what it calls (inclusive). py-spy pauses the
server for each sample, which slows it: read the shares, not the absolute speed.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

from . import _infra
from .run import MIXES, SCENARIOS, scenario_env

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Frames of these packages own a sample; the standard library's (json, asyncio, ...) are
# charged to the nearest of these that called them.
OWNERS = (
    "coatcheck",
    "starlette",
    "uvicorn",
    "benchmarks",
    "flask",
    "werkzeug",
    "gunicorn",
    "starsessions",
    "flask_session",
    "redis",
    "psycopg",
    "pymysql",
    "aiomysql",
    "sqlalchemy",
    "itsdangerous",
)


def short(frame: str) -> str:
    """``function (package/module.py)`` without the site-packages prefix."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def package(frame: str) -> str:
    """The top-level package of a shortened frame (``coatcheck``, ``json``, ...)."""
    match = _FRAME.match(frame)
    return match["file"].split("/", 1)[0].removesuffix(".py") if match else ""


class Profile:
    """Samples per function (self, inclusive), per owning package, and per owning coatcheck function."""

    def __init__(self) -> None:
        self.total = 0
        self.own: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.packages: collections.Counter[str] = collections.Counter()
        self.coatcheck: collections.Counter[str] = collections.Counter()

    def add(self, frames: list[str], n: int) -> None:
        """One stack (root first) seen ``n`` times."""
        self.total += n
        self.own[frames[-1]] += n
        for frame in set(frames):
            self.inclusive[frame] += n
        owner = next((f for f in reversed(frames) if package(f) in OWNERS), "")
        name = package(owner) if owner else "other"
        if name == "uvicorn" and all(package(f) in ("uvicorn", "click", "asyncio", "") for f in frames):
            name = "uvicorn + event loop (no app frame)"
        self.packages[name] += n
        if name == "coatcheck":
            self.coatcheck[owner] += n


def aggregate(collapsed: Path) -> Profile:
    """Read py-spy's collapsed stacks."""
    profile = Profile()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if frames:
            profile.add(frames, int(count))
    return profile


def main(argv: list[str] | None = None) -> int:
    """Profile one scenario and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="asgi/coatcheck/memory", choices=[s.key for s in SCENARIOS])
    parser.add_argument("--mix", default="rmw", choices=list(MIXES))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument(
        "--nonblocking", action="store_true", help="sample without pausing the server (cheaper, but stacks can tear)"
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.key == args.scenario)
    path, with_cookie = MIXES[args.mix]
    with _infra.services() as services:
        server = _infra.start_server(scenario.interface, scenario.module, scenario_env(scenario, services), services.work_dir)
        try:
            cookies = services.work_dir / "cookies.txt"
            made = [f"sessionid={'x' * 43}"] if scenario.role == "ceiling" else _infra.make_sessions(server.port, 256)
            cookies.write_text("\n".join(made) + "\n")
            cookie_file = cookies if with_cookie else None
            _infra.run_wrk(server.port, path, duration=2, connections=32, cookies_file=cookie_file, max_requests=10**6)
            out = services.work_dir / "profile.txt"
            seconds = str(round(args.duration) + 2)
            spy_argv = [str(_infra.VENV_BIN / "py-spy"), "record", "--pid", str(server.worker_pid()), "--format", "raw",
                        "--rate", str(args.rate), "--duration", seconds, "--function", "--output", str(out)]  # fmt: skip
            if args.nonblocking:
                spy_argv.append("--nonblocking")
            spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            time.sleep(1)
            cpu = server.cpu_seconds()
            wrk = _infra.run_wrk(server.port, path, duration=args.duration, connections=32, cookies_file=cookie_file,
                                 max_requests=10**7)  # fmt: skip
            cpu = server.cpu_seconds() - cpu
            _, err = spy.communicate(timeout=args.duration + 60)
        finally:
            server.stop()
        if not out.exists():
            print(f"py-spy failed: {err.decode(errors='replace')[-1000:]}", file=sys.stderr)
            return 1
        profile = aggregate(out)
    per_request = cpu * 1e6 / max(1, wrk["requests"])
    rps = wrk["requests"] / (wrk["duration_us"] / 1e6)
    total = max(1, profile.total)
    print(f"\n{scenario.key} {args.mix}: {rps:,.0f} req/s, {per_request:.0f} µs CPU per request, {total:,} busy samples\n")
    sections = (
        ("by package (standard library charged to its caller)", profile.packages, 20),
        ("coatcheck's functions, own code plus the standard library they call", profile.coatcheck, 30),
        ("by self time", profile.own, args.top),
        ("by inclusive time", profile.inclusive, args.top),
    )
    for title, counter, top in sections:
        print(f"{title} | % of busy samples | µs per request")
        for name, n in counter.most_common(top):
            print(f"  {name:100} {100 * n / total:5.1f}% {per_request * n / total:7.1f}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
