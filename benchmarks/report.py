"""Turn the raw runs into medians, min-max ranges and ratios; render markdown and the chart."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us", "gc_us", "round_trips", "writes", "redis_changes")
RATIO_METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us")
MIX_TITLES = {
    "rmw": "existing session, read-modify-write",
    "read": "existing session, read-only",
    "nocookie": "no cookie (a new session each request, never written)",
}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def spread(values: Iterable[float | None]) -> dict[str, float] | None:
    """Median, min and max (None when there is no value)."""
    found = [v for v in values if v is not None]
    if not found:
        return None
    return {"median": statistics.median(found), "min": min(found), "max": max(found)}


def _ratios(runs: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]], metric: str) -> dict[str, float] | None:
    """Per-round ratios (each round against the same round of the baseline), then their spread."""
    pairs = [(run[metric], base[r][metric]) for r, run in runs.items() if r in base]
    return spread(a / b for a, b in pairs if a is not None and b)


def summarize(http: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario and mix: the metrics' spread and the ratios to the ceiling and best peer."""
    scenarios = {s["key"]: s for s in http["scenarios"]}
    by_key: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for run in http["runs"]:
        by_key.setdefault((run["scenario"], run["mix"]), {})[run["round"]] = run
    rows = []
    for (key, mix), runs in by_key.items():
        scenario = scenarios[key]
        row: dict[str, Any] = {
            **scenario,
            "mix": mix,
            "rounds": len(runs),
            "errors": sum(r["errors"] + r["non_2xx"] for r in runs.values()),
        }
        row.update({metric: spread(r.get(metric) for r in runs.values()) for metric in METRICS})
        ceilings = [k for k, s in scenarios.items() if s["role"] == "ceiling" and s["interface"] == scenario["interface"]]
        ceiling = ceilings[0] if ceilings else None
        row["vs_ceiling"] = {}
        if ceiling is not None and ceiling != key and (ceiling, mix) in by_key:
            row["vs_ceiling"] = {m: _ratios(runs, by_key[ceiling, mix], m) for m in RATIO_METRICS}
        row["peer"], row["vs_peer"] = None, {}
        if scenario["role"] in ("coatcheck", "floor"):
            peers = [
                k
                for k, s in scenarios.items()
                if s["role"] == "peer"
                and s["interface"] == scenario["interface"]
                and s["store"] == scenario["store"]
                and (k, mix) in by_key
            ]
            if peers:
                best = max(peers, key=lambda k: statistics.median(r["rps"] for r in by_key[k, mix].values()))
                row["peer"] = best
                row["vs_peer"] = {m: _ratios(runs, by_key[best, mix], m) for m in (*RATIO_METRICS, "round_trips")}
        rows.append(row)
    order = {s["key"]: i for i, s in enumerate(http["scenarios"])}
    mixes = list(MIX_TITLES)
    rows.sort(key=lambda r: (r["interface"], mixes.index(r["mix"]), order[r["key"]]))
    return rows


def _find(summary: list[dict[str, Any]], key: str, mix: str) -> dict[str, Any] | None:
    return next((row for row in summary if row["key"] == key and row["mix"] == mix), None)


def targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured median and worst round and a verdict."""
    found: list[dict[str, Any]] = []

    def rps_ratio(key: str, mix: str, against: str) -> dict[str, float] | None:
        row = _find(summary, key, mix)
        return None if row is None else (row["vs_ceiling"] if against == "ceiling" else row["vs_peer"]).get("rps")

    def ratio(name: str, key: str, mix: str, against: str, goal: float) -> None:
        value = rps_ratio(key, mix, against)
        floor = rps_ratio(key.replace("/coatcheck/", "/floor/"), mix, against)  # the same ratio for the floor
        found.append(
            {
                "target": name,
                "goal": f">= {goal:g}x",
                "median": None if value is None else value["median"],
                "worst": None if value is None else value["min"],
                "pass": None if value is None else value["median"] >= goal,
                "floor": None if floor is None else floor["median"],
            }
        )

    ratio("ASGI read-modify-write, memory store vs plain Starlette (req/s)", "asgi/coatcheck/memory", "rmw", "ceiling", 0.85)
    ratio("ASGI read-modify-write, memory store vs starsessions memory", "asgi/coatcheck/memory", "rmw", "peer", 1.6)
    for mix in ("rmw", "read"):
        ratio(f"ASGI Redis vs starsessions Redis ({mix})", "asgi/coatcheck/redis", mix, "peer", 2.5)
    for mix in ("rmw", "read"):
        ratio(f"WSGI Redis vs Flask-Session Redis ({mix})", "wsgi/coatcheck/redis", mix, "peer", 1.5)
    for interface in ("asgi", "wsgi"):
        row = _find(summary, f"{interface}/coatcheck/redis", "read")
        rt = None if row is None else row["round_trips"]
        writes = None if row is None else row["writes"]
        changes = (row or {}).get("redis_changes") or {"max": 1.0}
        written = max(changes["max"], writes["max"] if writes else 0.0)
        found.append(
            {
                "target": f"{interface.upper()} Redis read-only: round trips per request / worst writes (keys changed)",
                "goal": "1 / 0",
                "median": None if rt is None else rt["median"],
                "worst": written,
                "pass": None if rt is None else rt["max"] <= 1.02 and written <= 1e-3,
            }
        )
    for row in summary:
        if row["role"] == "coatcheck" and row["mix"] == "nocookie":
            ratio(
                f"{row['interface'].upper()} no cookie, {row['store']} vs ceiling (req/s)",
                row["key"],
                "nocookie",
                "ceiling",
                0.95,
            )
    return found


# -- markdown ---------------------------------------------------------------------------------


def _num(value: float, digits: int = 2) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def cell(value: dict[str, float] | None, digits: int = 2) -> str:
    """``median (min-max)``, or the median alone when the rounds agree."""
    if value is None:
        return "n/a"
    median = _num(value["median"], digits)
    low, high = _num(value["min"], digits), _num(value["max"], digits)
    return median if low == high else f"{median} ({low}-{high})"


def _label(row: dict[str, Any]) -> str:
    if row["role"] == "ceiling":
        return f"**{'Starlette' if row['interface'] == 'asgi' else 'Flask'}, no session (ceiling)**"
    if row["role"] == "floor":
        return f"*floor: least possible session* {row['store']}"
    name = "**coatcheck**" if row["role"] == "coatcheck" else row["library"]
    return f"{name} {row['store']}" if row["store"] not in ("none", "cookie") else f"{name} (signed cookie)"


def http_tables(summary: list[dict[str, Any]]) -> str:
    """One table per interface and mix."""
    out = []
    header = (
        "| scenario | req/s | x ceil | x peer | p50 ms | x ceil | x peer | p99 ms | x ceil | x peer "
        "| CPU µs/req | x ceil | x peer | GC µs/req | round trips/req | x peer | writes/req |"
    )
    for interface, server in (
        ("asgi", "uvicorn, 1 worker, uvloop + httptools"),
        ("wsgi", "gunicorn, 1 gthread worker, 32 threads"),
    ):
        for mix, title in MIX_TITLES.items():
            rows = [r for r in summary if r["interface"] == interface and r["mix"] == mix]
            if not rows:
                continue
            out += [f"#### {interface.upper()} ({server}): {title}", "", header, "|" + "---|" * 17]
            for r in rows:
                c, p = r["vs_ceiling"], r["vs_peer"]
                out.append(
                    f"| {_label(r)} | {cell(r['rps'])} | {cell(c.get('rps'))} | {cell(p.get('rps'))} "
                    f"| {cell(r['p50_ms'])} | {cell(c.get('p50_ms'))} | {cell(p.get('p50_ms'))} "
                    f"| {cell(r['p99_ms'])} | {cell(c.get('p99_ms'))} | {cell(p.get('p99_ms'))} "
                    f"| {cell(r['cpu_us'])} | {cell(c.get('cpu_us'))} | {cell(p.get('cpu_us'))} | {cell(r.get('gc_us'))} "
                    f"| {cell(r['round_trips'])} | {cell(p.get('round_trips'))} | {cell(r['writes'])} |"
                    + (f" ⚠ {r['errors']} errors" if r["errors"] else "")
                )
            out.append("")
    return "\n".join(out)


def targets_table(found: list[dict[str, Any]]) -> str:
    """The targets with their verdicts, and what the floor (the least possible session) reaches."""
    out = ["| target | goal | median | worst round | verdict | floor (median) |", "|---|---|---|---|---|---|"]
    for t in found:
        verdict = "n/a" if t["pass"] is None else ("pass" if t["pass"] else "**FAIL**")
        med = "n/a" if t["median"] is None else f"{t['median']:.2f}"
        worst = "n/a" if t["worst"] is None else f"{t['worst']:.2f}"
        floor = "—" if t.get("floor") is None else f"{t['floor']:.2f}"
        out.append(f"| {t['target']} | {t['goal']} | {med} | {worst} | {verdict} | {floor} |")
    return "\n".join(out)


def micro_table(micro: dict[str, Any]) -> str:
    """µs per store operation next to the raw driver's floor."""
    out = [
        "| store | operation | coatcheck sync µs | raw driver sync µs | x | coatcheck async µs | raw driver async µs | x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in micro["rows"]:

        def get(side: str, who: str, row: dict[str, Any] = row) -> str:
            value = row.get(side, {}).get(who)
            return "—" if value is None else f"{value:.1f}"

        def times(side: str, row: dict[str, Any] = row) -> str:
            mine, floor = row.get(side, {}).get("coatcheck"), row.get(side, {}).get("raw")
            return "—" if not mine or not floor else f"{mine / floor:.1f}"

        out.append(
            f"| {row['store']} | {row['op']} | {get('sync', 'coatcheck')} | {get('sync', 'raw')} | {times('sync')} "
            f"| {get('async', 'coatcheck')} | {get('async', 'raw')} | {times('async')} |"
        )
    return "\n".join(out)


def bytecode_table(data: dict[str, Any]) -> str:
    """Bytecodes per request by app and mix, what each adds to the ceiling, and where they run."""
    out = [
        "| app | mix | bytecodes/request | x ceiling | added to the ceiling | where (bytecodes/request) |",
        "|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        where = ", ".join(f"{name} {n:,.0f}" for name, n in row["where"].items())
        out.append(
            f"| {row['app']} | {row['mix']} | {row['bytecodes']:,.0f} | {row['x_ceiling']:.2f} | {row['added']:,.0f} | {where} |"
        )
    return "\n".join(out)


def scale_tables(scale: dict[str, Any]) -> str:
    """The memory footprint, the read cost at two sizes (over HTTP, and per store in process) and the purge latencies."""
    out = []
    mem = scale.get("memory")
    if mem:
        out += [
            "| memory store | sessions | bytes per session (RSS delta) | bytes per session (tracemalloc) | insert µs/session |",
            "|---|---|---|---|---|",
            f"| live sessions | {mem['sessions']:,} | {mem['rss_bytes_per_session']:.0f} "
            f"| {mem['tracemalloc_bytes_per_session']:.0f} (sample of {mem['tracemalloc_sample']:,}) "
            f"| {mem['insert_us']:.2f} |",
            "",
        ]
    http = scale.get("http_read")
    if http:
        out += [
            "| read-only HTTP requests, memory store, ASGI | sessions in store | req/s | p50 ms | p99 ms | CPU µs/req |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| wrk, 32 connections | {r['sessions']:,} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['cpu_us']:.0f} |"
            for r in http
        ]
        out.append("")
    reads = scale.get("reads")
    if reads:

        def grows(values: list[float], digits: int) -> str:
            small, large = values
            return f"{small:,.{digits}f} → {large:,.{digits}f} (x{large / small:.2f})"

        sizes = next((r["sessions"] for r in reads if "error" not in r), [0, 0])
        out += [
            f"| read-only request's session work, in process | {sizes[0]:,} → {sizes[1]:,} sessions: wall µs/read "
            "| CPU µs/read | instructions/read |",
            "|---|---|---|---|",
        ]
        for r in reads:
            if "error" in r:
                out.append(f"| {r['store']} | failed: {r['error'][:80]} | | |")
                continue
            counted = grows(r["instructions"], 0) if len(r.get("instructions", ())) == 2 else "n/a"
            out.append(f"| {r['store']} | {grows(r['wall_us'], 1)} | {grows(r['cpu_us'], 1)} | {counted} |")
        out.append("")
    purges = scale.get("purge")
    if purges:
        out += [
            "| purge while serving read-only requests | expired sessions | purge s | p50 ms before | p99 ms before "
            "| p50 ms during | p99 ms during | max ms during | requests during |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in purges:
            if "error" in r:
                out.append(f"| {r['store']} | — | failed: {r['error'][:80]} | | | | | | |")
                continue
            if r.get("native_ttl"):
                out.append(f"| {r['store']} | native TTL: the server drops expired keys itself, no purge runs | | | | | | | |")
                continue
            out.append(
                f"| {r['store']} | {r['expired']:,} ({r['deleted']:,} deleted) | {r['purge_seconds']:.2f} "
                f"| {r['before']['p50_ms']:.2f} | {r['before']['p99_ms']:.2f} | {r['during']['p50_ms']:.2f} "
                f"| {r['during']['p99_ms']:.2f} | {r['during']['max_ms']:.1f} | {r['during']['requests']:,} |"
            )
        out.append("")
    return "\n".join(out)


def instruction_tables(data: dict[str, Any]) -> str:
    """The session layer's cost per framework and the targets on it, from ``benchmarks.concurrent``'s JSON."""
    from . import concurrent  # here: it imports the apps' helpers

    found = concurrent.result_from_json(data)
    return f"{concurrent.framework_table(found)}\n\n{concurrent.targets_table(found)}"


def markdown(result: dict[str, Any], *, chart_name: str | None = None) -> str:
    """The whole report as markdown (headings from level 3 down, to nest in the docs): the session
    layer's instructions per request first, then the HTTP load and the other parts."""
    meta = result["meta"]
    m = meta["machine"]
    kind = "QUICK SMOKE RUN (not for comparison)" if meta["quick"] else f"{meta['args']['rounds']} rounds"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    out = [
        f"### Results {meta['timestamp']}: {kind}",
        "",
        f"Commit `{meta['commit']}`; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"load average at start {m['loadavg'][0]:.2f}, at end {meta.get('loadavg_end', [0])[0]:.2f}. "
        f"Whole run: {meta.get('seconds', 0) // 60} min.",
        "",
        f"Versions: {versions}.",
        "",
    ]
    data = result.get("instructions")
    if data:
        n = data["workers"]
        out += [
            "#### The session layer's own cost: machine instructions per request",
            "",
            f"Each app and mix under callgrind, in process: {data['requests']} measured requests on each of {n} sessions "
            f"({n} in flight for ASGI apps, one at a time for WSGI apps).",
            "",
            instruction_tables(data),
            "",
        ]
    if result.get("ablation"):
        from .ablation import table as ablation_table  # here, as instruction_tables

        out += [
            "#### What each guarantee costs, by ablation (Starlette, instructions per request)",
            "",
            "Each column a guarantee taken out of coatcheck alone (`benchmarks/apps/_ablate.py`); what is left is "
            "coatcheck with all four out, minus the floor.",
            "",
            ablation_table(result["ablation"]),
            "",
        ]
    if result.get("features"):
        from .features import table as features_table

        out += [
            "#### What each optional feature costs when on (Starlette, 8 requests in flight, instructions per request)",
            "",
            features_table(result["features"]),
            "",
        ]
    if "summary" in result:
        out += [
            "#### HTTP load",
            "",
            f"{meta['args']['duration']:g} s of load per mix and round after {meta['args']['warmup']:g} s of warm-up, "
            f"{meta['args']['connections']} connections, requests cycling through {meta['args']['sessions']} sessions. "
            f"Cells are the median over rounds with (min-max); ratios are taken round by round.",
            "",
        ]
    if chart_name and "summary" in result:
        out += [f"![req/s and CPU per request]({chart_name})", ""]
    if result.get("targets"):
        out += ["#### HTTP targets", "", targets_table(result["targets"]), ""]
    if result.get("summary"):
        out += [http_tables(result["summary"])]
    failures = result.get("http", {}).get("failures")
    if failures:
        out += ["Scenarios that could not run:", ""] + [f"- `{k}`: {v.splitlines()[0][:200]}" for k, v in failures.items()] + [""]
    if result.get("micro"):
        out += ["#### Store operations (in process, µs per call, best of the repeats)", "", micro_table(result["micro"]), ""]
    if result.get("bytecodes"):
        out += [
            "#### Python bytecodes per request (in process, memory store; the same on every run)",
            "",
            bytecode_table(result["bytecodes"]),
            "",
        ]
    if result.get("scale"):
        out += ["#### Scale", "", scale_tables(result["scale"]), ""]
    return "\n".join(out).rstrip() + "\n"


def publish(markdown_text: str, docs: Path) -> None:
    """Replace the generated part of ``docs/performance.md`` (between the markers)."""
    text = docs.read_text()
    body = markdown_text.replace("](" + _chart_ref(markdown_text) + ")", "](../benchmarks/performance.png)")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    docs.write_text(pattern.sub(lambda _: f"{BEGIN}\n{body}{END}", text))


def _chart_ref(text: str) -> str:
    match = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text)
    return match.group(1) if match else "\0"


# -- chart ------------------------------------------------------------------------------------


def chart(result: dict[str, Any], path: Path) -> None:
    """req/s and CPU µs per request for every scenario and mix, with min-max error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    interfaces = [i for i in ("asgi", "wsgi") if any(r["interface"] == i for r in summary)]
    fig, axes = plt.subplots(len(interfaces), 2, figsize=(15, 5.2 * len(interfaces)), squeeze=False)
    colors = {"rmw": "#1f77b4", "read": "#2ca02c", "nocookie": "#ff7f0e"}
    for line, interface in enumerate(interfaces):
        rows = [r for r in summary if r["interface"] == interface]
        keys = list(dict.fromkeys(r["key"] for r in rows))
        labels = [re.sub(r"\*+", "", _label(next(r for r in rows if r["key"] == k))) for k in keys]
        for col, (metric, title) in enumerate((("rps", "requests per second"), ("cpu_us", "server CPU µs per request"))):
            ax = axes[line][col]
            height = 0.8 / len(MIX_TITLES)
            for i, mix in enumerate(MIX_TITLES):
                found = {r["key"]: r[metric] for r in rows if r["mix"] == mix and r[metric] is not None}
                ys = [n + (i - 1) * height for n, k in enumerate(keys) if k in found]
                values = [found[k] for k in keys if k in found]
                med = [v["median"] for v in values]
                err = [[v["median"] - v["min"] for v in values], [v["max"] - v["median"] for v in values]]
                ax.barh(ys, med, height=height, xerr=err, color=colors[mix], label=mix, capsize=2)
            ax.set_yticks(range(len(keys)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{interface.upper()}: {title}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            if line == 0 and col == 0:
                ax.legend(fontsize=8, loc="lower right")
    stamp = result["meta"]["timestamp"] + (" (quick smoke run)" if result["meta"]["quick"] else "")
    fig.suptitle(f"coatcheck benchmark {stamp}: median over rounds, bars span min-max", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(title: str, render: Callable[[dict[str, Any]], str], data: dict[str, Any]) -> None:
    """Print one rendered table under a title (for the standalone scripts)."""
    print(f"\n{title}\n\n{render(data)}\n")
