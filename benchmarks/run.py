"""The benchmark: HTTP load on every scenario, then the store micro-benchmarks, the scale checks, the
bytecode count and the session layer's machine instructions per request (``benchmarks.concurrent``).

Run it through ``bash benchmarks/run.sh`` (which builds ``benchmarks/.venv``); the options are
those of this module: ``--quick`` for a smoke run, ``--rounds N --duration S`` for the real one.
Writes ``benchmarks/results/<timestamp>.json``, ``.md`` and ``.png``; ``--publish`` also
refreshes the generated part of ``docs/performance.md`` and the chart ``benchmarks/performance.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _infra, report
from ._infra import Services, log


@dataclass(frozen=True)
class Scenario:
    """One server configuration: an interface, a session library and its store."""

    key: str
    interface: str  # asgi | wsgi
    library: str  # plain | floor | coatcheck | starsessions | starlette-cookie | flask-session | flask-cookie
    store: str  # none | memory | sqlite | redis | postgres | mysql | cookie
    module: str

    @property
    def role(self) -> str:
        """ceiling, floor (the least a session layer can cost: ``apps/_floor.py``), coatcheck or peer."""
        return {"plain": "ceiling", "floor": "floor", "coatcheck": "coatcheck"}.get(self.library, "peer")


def _scenario(interface: str, library: str, store: str, module: str) -> Scenario:
    return Scenario(f"{interface}/{library}/{store}", interface, library, store, f"benchmarks.apps.{module}:app")


# Rivals on the same store run next to each other (the ratios compare runs a minute apart, not
# ten), the ceiling next to the memory store's.
SCENARIOS = [
    _scenario("asgi", "plain", "none", "plain_starlette"),
    _scenario("asgi", "floor", "memory", "floor_asgi"),
    _scenario("asgi", "coatcheck", "memory", "coatcheck_asgi"),
    _scenario("asgi", "starsessions", "memory", "starsessions_app"),
    _scenario("asgi", "floor", "redis", "floor_asgi"),
    _scenario("asgi", "coatcheck", "redis", "coatcheck_asgi"),
    _scenario("asgi", "starsessions", "redis", "starsessions_app"),
    _scenario("asgi", "starlette-cookie", "cookie", "starlette_cookie"),
    *(_scenario("asgi", "coatcheck", store, "coatcheck_asgi") for store in ("sqlite", "postgres", "mysql")),
    _scenario("wsgi", "plain", "none", "plain_flask"),
    _scenario("wsgi", "coatcheck", "memory", "coatcheck_wsgi"),
    _scenario("wsgi", "floor", "redis", "floor_wsgi"),
    _scenario("wsgi", "coatcheck", "redis", "coatcheck_wsgi"),
    _scenario("wsgi", "flask-session", "redis", "flask_session_app"),
    _scenario("wsgi", "coatcheck", "sqlite", "coatcheck_wsgi"),
    _scenario("wsgi", "flask-session", "sqlite", "flask_session_app"),
    _scenario("wsgi", "flask-cookie", "cookie", "flask_cookie"),
    *(_scenario("wsgi", "coatcheck", store, "coatcheck_wsgi") for store in ("postgres", "mysql")),
]

# mix -> (path, whether requests carry an existing session's cookie)
MIXES = {"rmw": ("/rmw", True), "read": ("/read", True), "nocookie": ("/read", False)}


def scenario_env(scenario: Scenario, services: Services) -> dict[str, str]:
    """The ``BENCH_*`` settings of a scenario's app."""
    env = {"BENCH_STORE": scenario.store, "BENCH_REDIS_URL": services.redis_url}
    urls = {
        "memory": "memory://?max_entries=3000000",
        "sqlite": f"sqlite:///{services.work_dir / 'coatcheck.db'}",
        "redis": services.redis_url,
        "postgres": services.pg_url("bench_http"),
        "mysql": services.mysql_url("bench_http"),
    }
    if scenario.store in urls:
        env["BENCH_STORE_URL"] = urls[scenario.store]
    env["BENCH_SQLITE_PATH"] = str(services.work_dir / f"{scenario.library}.db")
    return env


def available(scenario: Scenario, services: Services) -> bool:
    """False when the scenario's database server is down."""
    return {"postgres": services.postgres, "mysql": services.mysql}.get(scenario.store, True)


def _counters(scenario: Scenario, server: _infra.Server, services: Services) -> dict[str, Any]:
    counters: dict[str, Any] = {}
    if scenario.store == "redis":
        counters["redis"] = _infra.redis_counters(services.redis_url)
    counters["app"] = _infra.get_json(server.port, "/__bench/stats")
    counters["cpu"] = server.cpu_seconds()  # after our own stats request: it is not the load's
    return counters


def _measure(
    scenario: Scenario,
    mix: str,
    round_: int,
    server: _infra.Server,
    services: Services,
    cookies_file: Path | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    path, _ = MIXES[mix]
    if args.warmup > 0:
        _infra.run_wrk(
            server.port,
            path,
            duration=args.warmup,
            connections=args.connections,
            cookies_file=cookies_file,
            max_requests=args.max_requests,
        )
    before = _counters(scenario, server, services)
    wrk = _infra.run_wrk(
        server.port,
        path,
        duration=args.duration,
        connections=args.connections,
        cookies_file=cookies_file,
        max_requests=args.max_requests,
    )
    after = _counters(scenario, server, services)
    requests = max(1, wrk["requests"])
    run: dict[str, Any] = {
        "scenario": scenario.key,
        "mix": mix,
        "round": round_,
        "requests": wrk["requests"],
        "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
        "p50_ms": wrk["p50_us"] / 1000,
        "p90_ms": wrk["p90_us"] / 1000,
        "p99_ms": wrk["p99_us"] / 1000,
        "max_ms": wrk["max_us"] / 1000,
        "cpu_us": (after["cpu"] - before["cpu"]) * 1e6 / requests,
        "gc_us": (after["app"]["gc_seconds"] - before["app"]["gc_seconds"]) * 1e6 / requests,
        "errors": sum(wrk[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")),
        "non_2xx": wrk["status_errors"],
        "round_trips": None,
        "writes": None,
        "store_calls": None,
        "redis_commands": None,
        "redis_changes": None,
        "client_round_trips": None,
    }
    if scenario.store == "memory" and scenario.library == "coatcheck":
        run["round_trips"], run["writes"] = 0.0, None
    elif scenario.store == "redis":
        server_before, server_after = before["redis"], after["redis"]
        commands = {name: (n - server_before["commands"].get(name, 0)) / requests for name, n in server_after["commands"].items()}
        run["redis_commands"] = {name: round(value, 4) for name, value in commands.items() if value}
        run["round_trips"] = (server_after["reads"] - server_before["reads"] - 1) / requests  # less our own INFO
        run["redis_changes"] = (server_after["changes"] - server_before["changes"]) / requests
        client = after["app"]["redis_round_trips"] - before["app"]["redis_round_trips"]
        writes = after["app"]["redis_write_round_trips"] - before["app"]["redis_write_round_trips"]
        run["client_round_trips"] = client / requests
        run["writes"] = writes / requests if client else None  # only seen when the library talks through redis-py
    elif scenario.library == "coatcheck":  # SQL stores: the app counts its store calls
        calls = {
            name: (n - before["app"]["store_calls"].get(name, 0)) / requests for name, n in after["app"]["store_calls"].items()
        }
        run["store_calls"] = {name: round(value, 4) for name, value in calls.items() if value}
        run["round_trips"] = sum(calls.values())
        run["writes"] = sum(v for k, v in calls.items() if k in ("save", "touch", "rotate", "delete"))
    return run


def run_scenario(scenario: Scenario, round_: int, services: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the scenario's server, create its sessions, measure every mix, stop it."""
    if scenario.store == "redis":
        _infra.redis_flush(services.redis_url)
    server = _infra.start_server(scenario.interface, scenario.module, scenario_env(scenario, services), services.work_dir)
    runs = []
    try:
        if scenario.role == "ceiling":  # same request shape: a cookie of the usual size, ignored
            cookies = [f"sessionid={'x' * 43}"] * args.sessions
        else:
            cookies = _infra.make_sessions(server.port, args.sessions)
        cookies_file = services.work_dir / "cookies.txt"
        cookies_file.write_text("\n".join(cookies) + "\n")
        for mix, (_, with_cookie) in MIXES.items():
            run = _measure(scenario, mix, round_, server, services, cookies_file if with_cookie else None, args)
            log(
                f"  {scenario.key:32} {mix:8} {run['rps']:9.0f} req/s  p50 {run['p50_ms']:6.2f} ms  "
                f"p99 {run['p99_ms']:6.2f} ms  cpu {run['cpu_us']:6.0f} us/req  rt {_fmt(run['round_trips'])} "
                f"{run['store_calls'] or run['redis_commands'] or ''}"
                + (f"  ERRORS {run['errors']} non-2xx {run['non_2xx']}" if run["errors"] or run["non_2xx"] else "")
            )
            runs.append(run)
    finally:
        server.stop()
    return runs


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def run_http(services: Services, args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario, every mix, ``args.rounds`` times, rounds interleaved; even rounds run the
    scenarios in reverse, so a drift of the machine's speed during a round favours no side."""
    scenarios = [s for s in SCENARIOS if not args.only or any(part in s.key for part in args.only)]
    runs: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for round_ in range(1, args.rounds + 1):
        log(f"HTTP round {round_}/{args.rounds}")
        for scenario in scenarios if round_ % 2 else scenarios[::-1]:
            if scenario.key in failures:
                continue
            if not available(scenario, services):
                failures[scenario.key] = "database server unavailable"
                continue
            try:
                runs.extend(run_scenario(scenario, round_, services, args))
            except Exception as exc:
                failures[scenario.key] = f"{type(exc).__name__}: {exc}"[:2000]
                log(f"  {scenario.key} FAILED: {failures[scenario.key]}")
    return {"scenarios": [{**asdict(s), "role": s.role} for s in scenarios], "runs": runs, "failures": failures}


def run_part(
    module: str, services: Services, args: argparse.Namespace, out: Path, options: list[str] | None = None
) -> dict[str, Any] | None:
    """Run ``benchmarks.<module>`` in its own process with ``options`` (default: ``--quick`` on a
    quick run); return its JSON."""
    options = (["--quick"] if args.quick else []) if options is None else options
    argv = [sys.executable, "-m", f"benchmarks.{module}", "--json", str(out), *options]
    env = {**os.environ, "BENCH_REDIS_URL": services.redis_url, "PYTHONPATH": str(_infra.ROOT)}
    log(f"{module}: {' '.join(argv[1:])}")
    done = subprocess.run(argv, cwd=_infra.ROOT, env=env, check=False, timeout=3600)
    if done.returncode != 0 or not out.exists():
        log(f"{module} failed with exit code {done.returncode}")
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _resumed(base: Path, key: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """With ``--resume``: the part ``key`` as the resumed run wrote it (``<stamp>.<key>.json``), if it did."""
    if args.resume is None:
        return None
    found = base.with_suffix(f".{key}.json")
    if not found.exists():
        return None
    log(f"{key}: taken from {found.name}")
    part: dict[str, Any] = json.loads(found.read_text())
    return part


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s per mix, 1 round, small scale checks, 5 requests under callgrind"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every scenario (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per mix and round (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load before each mix (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--sessions",
        type=int,
        default=256,
        help="sessions the requests cycle through (default 256; 1 = every request on one session)",
    )
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="cap on requests per wrk run")
    parser.add_argument("--only", action="append", default=[], help="only scenarios whose key contains this (repeatable)")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP load")
    parser.add_argument("--skip-micro", action="store_true", help="skip the store micro-benchmarks")
    parser.add_argument("--skip-scale", action="store_true", help="skip the scale checks")
    parser.add_argument("--skip-bytecodes", action="store_true", help="skip the in-process bytecode count")
    parser.add_argument(
        "--skip-instructions", action="store_true", help="skip the session layer's instructions per request (callgrind)"
    )
    parser.add_argument("--skip-features", action="store_true", help="skip the cost of each optional feature (callgrind)")
    parser.add_argument(
        "--resume",
        metavar="STAMP",
        help="finish the run of that timestamp: the parts it wrote to benchmarks/results/STAMP.*.json are kept, the rest run",
    )
    parser.add_argument("--skip-ablation", action="store_true", help="skip the cost of each guarantee, by ablation (callgrind)")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write the tables into docs/performance.md and the chart to benchmarks/performance.png",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.sessions = 1, 3.0, 1.0, 64
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    args = parse_args(argv)
    stamp = args.resume or time.strftime("%Y%m%d-%H%M%S")
    _infra.RESULTS_DIR.mkdir(exist_ok=True)
    base = _infra.RESULTS_DIR / stamp
    result: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "quick": args.quick,
            "args": vars(args),
            "commit": _infra.git_commit(),
            "versions": _infra.versions(),
            "machine": _infra.machine(),
        },
    }
    started = time.monotonic()
    instructions = ["--frameworks", "--instructions", "--workers", "32", "--requests", "5" if args.quick else "25"]
    ablation = ["--stores", "memory", "redis", "postgres", "--requests", "5" if args.quick else "25"]
    parts: list[tuple[str, str, bool, list[str] | None]] = [  # (result key, module, skipped, options)
        ("micro", "micro", args.skip_micro, None),
        ("scale", "scale", args.skip_scale, None),
        ("bytecodes", "bytecodes", args.skip_bytecodes, None),
        ("instructions", "concurrent", args.skip_instructions, instructions),
        ("features", "features", args.skip_features, ["--mixes", "rmw", "read"] if args.quick else []),
        ("ablation", "ablation", args.skip_ablation, ablation),
    ]
    with _infra.services() as services:
        if not args.skip_http:
            result["http"] = _resumed(base, "http", args) or run_http(services, args)
            base.with_suffix(".http.json").write_text(json.dumps(result["http"], default=str) + "\n")
        for key, module, skipped, options in parts:
            if not skipped:
                out = base.with_suffix(f".{key}.json")
                result[key] = _resumed(base, key, args) or run_part(module, services, args, out, options)
    result["meta"]["seconds"] = round(time.monotonic() - started)
    result["meta"]["loadavg_end"] = os.getloadavg()
    if "http" in result:
        result["summary"] = report.summarize(result["http"])
        result["targets"] = report.targets(result["summary"])
    chart = base.with_suffix(".png")
    if "summary" in result:
        report.chart(result, chart)
    markdown = report.markdown(result, chart_name=chart.name)
    base.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    base.with_suffix(".md").write_text(markdown)
    print(markdown)
    log(f"wrote {base}.json, {base}.md" + (f", {chart}" if chart.exists() else ""))
    if args.publish:
        if chart.exists():
            shutil.copyfile(chart, _infra.BENCH_DIR / "performance.png")
        report.publish(markdown, _infra.ROOT / "docs" / "performance.md")
        log("published to docs/performance.md and benchmarks/performance.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
