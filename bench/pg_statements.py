"""PostgreSQL's time per webhook, statement by statement, at saturation (pg_stat_statements).

    .venv/bin/python bench/pg_statements.py --kind nexus
    .venv/bin/python bench/pg_statements.py --kind axp --warm 3 --analyze   # after a warm-up
                                                                             # and an ANALYZE

The bench's throwaway PostgreSQL with `pg_stat_statements` loaded (nested statements too, so
the foreign-key checks show), a fresh database, `channel-bridge serve` of this tree with the
relay worker on, and wrk posting unique signed bodies, as `bench/ack_ab.py` does. Printed:
each statement's total execution time, calls and rows, and its time per webhook accepted in
the measured run. Execution time is wall time inside PostgreSQL: on a shared 2-core machine
it includes waiting for a core, so compare statements within a run, not runs.

`--warm S` runs wrk for S seconds first (its rows stay); `--analyze` then ANALYZEs the whole
database before the statistics are reset: the steady state a long-running bridge reaches.

`--fixed-rate N` posts signed Nexus webhooks open-loop at N/s for `--duration` seconds instead
of wrk's saturation (`--worker-off`: the acknowledgement alone): below saturation the group
commit's batches are small, and what each transaction costs whatever its size shows. Planning
time is tracked too (`pg_stat_statements.track_planning`). `--setting NAME=VALUE` adds a line
to the cluster's postgresql.conf: what a server setting would change, before changing code.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.ack_ab import TreeBridge  # noqa: E402
from bench.bridge_bench import (  # noqa: E402
    Bench,
    axp_post,
    fixed_rate,
    nexus_post,
    percentile,
    write_bodies,
)

STATEMENTS = """
SELECT calls, total_exec_time, total_plan_time, plans, rows,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 140) AS query
FROM pg_stat_statements
WHERE query NOT ILIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC
LIMIT $1
"""


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=("nexus", "axp"), default="nexus")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--warm", type=int, default=0, help="seconds of load before measuring")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after the warm-up")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--fixed-rate", type=int, default=0, help="open loop at N Nexus webhooks/s, not wrk"
    )
    parser.add_argument("--worker-off", action="store_true", help="BRIDGE_WORKER_ENABLED=false")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a postgresql.conf line for the cluster (a what-if: plan_cache_mode=...)",
    )
    args = parser.parse_args()
    if args.fixed_rate and args.kind != "nexus":
        parser.error("--fixed-rate posts signed Nexus webhooks: use it with --kind nexus")

    workdir = Path(tempfile.mkdtemp(prefix="pg-statements-"))
    bench = Bench(quick=True, workdir=workdir)
    bench.start()
    assert bench.postgres is not None
    conf = bench.postgres.datadir / "postgresql.conf"
    conf.write_text(
        conf.read_text()
        + "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
        + "pg_stat_statements.track_planning = on\n"
        + "".join(f"{setting}\n" for setting in args.setting)
    )
    bench.postgres.stop()
    bench.postgres.start()
    make = nexus_post if args.kind == "nexus" else axp_post
    try:
        bridge = TreeBridge(
            await bench.fresh_database(),
            bench.upstream_url,
            workdir,
            overrides={
                "BRIDGE_RETRY_SCHEDULE_S": "[1, 2, 5]",
                **({"BRIDGE_WORKER_ENABLED": "false"} if args.worker_off else {}),
            },
        )
        await bridge.start()
        connection = await asyncpg.connect(
            bridge.database_url.replace("postgresql+asyncpg", "postgresql")
        )
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if args.warm:
                warm = workdir / "warm.tsv"
                write_bodies(warm, [make("warm", n) for n in range(60_000)])
                bench.wrk(bridge.port, warm, args.warm)
                if args.analyze:
                    await connection.execute("ANALYZE")
            await connection.execute("SELECT pg_stat_statements_reset()")
            await connection.execute("SELECT pg_stat_reset()")
            if args.fixed_rate:
                posts = [nexus_post("run", n) for n in range(args.fixed_rate * args.duration)]
                result = await fixed_rate(bridge.port, posts, args.fixed_rate)
                figures = {"requests": len(posts), "rps": float(args.fixed_rate)}
                latency = (
                    f"open loop at {args.fixed_rate}/s, p50 / p99 "
                    f"{percentile(result.latencies_ms, 0.5):.1f} / "
                    f"{percentile(result.latencies_ms, 0.99):.1f} ms; "
                )
            else:
                bodies = workdir / "bodies.tsv"
                write_bodies(bodies, [make("run", n) for n in range(60_000)])
                figures = bench.wrk(bridge.port, bodies, args.duration)
                latency = ""
            commits = await connection.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            rows = await connection.fetch(STATEMENTS, args.top)
        finally:
            await connection.close()
            bridge.stop()
    finally:
        bench.stop()

    requests = figures["requests"]
    started = dt.datetime.now(dt.UTC)
    lines = [
        f"# PostgreSQL time per webhook, {started:%Y-%m-%d %H:%M} UTC\n",
        f"Command: `.venv/bin/python bench/pg_statements.py {' '.join(sys.argv[1:])}`\n",
        f"{args.kind}: {requests:,} webhooks in {args.duration} s ({figures['rps']:,.0f}/s), "
        f"{latency}about {commits:,} transactions committed ({requests / max(commits, 1):.1f} "
        f"webhooks each); execution time in all "
        f"{sum(r['total_exec_time'] for r in rows) * 1000 / requests:,.0f} µs and planning "
        f"{sum(r['total_plan_time'] for r in rows) * 1000 / requests:,.0f} µs per webhook (the "
        "statements below)\n",
        "| µs per webhook | total ms | planning ms (plans) | calls | rows | statement |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        query = row["query"].replace("|", "\\|")
        lines.append(
            f"| {row['total_exec_time'] * 1000 / requests:.1f} | {row['total_exec_time']:.0f} | "
            f"{row['total_plan_time']:.0f} ({row['plans']:,}) | "
            f"{row['calls']:,} | {row['rows']:,} | `{query}` |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    label = f"{args.kind}{'-warm' if args.warm else ''}{'-analyzed' if args.analyze else ''}"
    label += f"{f'-rate{args.fixed_rate}' if args.fixed_rate else ''}"
    label += "-workeroff" if args.worker_off else ""
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d-%H%M}-pg-statements-{label}.md"
    out.write_text(text)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
