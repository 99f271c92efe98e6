"""Share of a py-spy raw profile's samples by part of the serving process.

    .venv/bin/python bench/profile_shares.py bench/results/<…>-profile-<label>-<tree>-nexus.txt

Reads the collapsed stacks `bench/ack_ab.py --profile` writes and attributes each sample to
the first part whose frames it holds (the order matters: a handler's stack also holds the HTTP
layer's frames). Stacks py-spy truncated (SQLAlchemy's ORM frames without their caller) fall
into "event loop / other", so the group commit's share is a lower bound.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

PARTS = [
    (
        "relay worker",
        ("RelayWorker.", "channel_bridge/relay/worker.py", "channel_bridge/outbound.py"),
    ),
    ("group commit (inbox flush)", ("Inbox._flush", "Inbox._write_batch")),
    ("webhook handler", ("platforms/axp/router.py", "platforms/nexus/router.py")),
    ("HTTP layer (uvicorn, fast path)", ("httptools_impl", "fast_path.py", "BridgeApp.__call__")),
    ("loop-lag probe", ("watch_loop_lag",)),
]
OTHER = "event loop / other"


def shares(path: Path) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        part = next((name for name, frames in PARTS if any(f in stack for f in frames)), OTHER)
        counts[part] += int(samples)
    return counts, total


def main() -> None:
    for name in sys.argv[1:]:
        counts, total = shares(Path(name))
        print(f"{name}: {total} samples\n\n| part | share |\n|---|---|")
        for part, samples in counts.most_common():
            print(f"| {part} | {100 * samples / total:.0f} % |")
        print()


if __name__ == "__main__":
    main()
