# ruff: noqa: E501  (markdown table rows read better on one line)
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
from bench.bridge_bench import Bench, axp_post, nexus_post, write_bodies  # noqa: E402

STATEMENTS = """
SELECT calls, total_exec_time, rows,
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
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pg-statements-"))
    bench = Bench(quick=True, workdir=workdir)
    bench.start()
    assert bench.postgres is not None
    conf = bench.postgres.datadir / "postgresql.conf"
    conf.write_text(
        conf.read_text()
        + "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
    )
    bench.postgres.stop()
    bench.postgres.start()
    make = nexus_post if args.kind == "nexus" else axp_post
    try:
        bridge = TreeBridge(
            await bench.fresh_database(),
            bench.upstream_url,
            workdir,
            overrides={"BRIDGE_RETRY_SCHEDULE_S": "[1, 2, 5]"},
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
            bodies = workdir / "bodies.tsv"
            write_bodies(bodies, [make("run", n) for n in range(60_000)])
            figures = bench.wrk(bridge.port, bodies, args.duration)
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
        f"execution time in all {sum(r['total_exec_time'] for r in rows) * 1000 / requests:,.0f} µs "
        "per webhook (the statements below)\n",
        "| µs per webhook | total ms | calls | rows | statement |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        query = row["query"].replace("|", "\\|")
        lines.append(
            f"| {row['total_exec_time'] * 1000 / requests:.1f} | {row['total_exec_time']:.0f} | "
            f"{row['calls']:,} | {row['rows']:,} | `{query}` |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    label = f"{args.kind}{'-warm' if args.warm else ''}{'-analyzed' if args.analyze else ''}"
    out = ROOT / "bench" / "results" / f"{started:%Y-%m-%d-%H%M}-pg-statements-{label}.md"
    out.write_text(text)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
