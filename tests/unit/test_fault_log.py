"""FaultLog: a fault repeated every second is one line when it starts, a summary with a count
once a minute while it lasts, and one line when it ends."""

from __future__ import annotations

from typing import Any

from channel_bridge.ops.faults import FaultLog


class RecordingLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))


def test_an_outage_of_ten_minutes_is_twelve_lines_not_six_hundred() -> None:
    now = [0.0]
    logger = RecordingLogger()
    faults = FaultLog("claiming deliveries", clock=lambda: now[0], logger=logger, worker_id="w1")
    error = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)\nmore detail")
    for second in range(600):
        now[0] = float(second)
        faults.failed(error)
    now[0] = 600.0
    faults.succeeded()
    faults.succeeded()  # nothing more to say once it works

    events = [(level, event) for level, event, _ in logger.lines]
    assert events[0] == ("warning", "claiming deliveries failing")
    assert events[1:-1] == [("warning", "claiming deliveries still failing")] * 9
    assert events[-1] == ("info", "claiming deliveries works again")
    first = logger.lines[0][2]
    assert first == {
        "error": "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)",
        "worker_id": "w1",
    }
    summary = logger.lines[1][2]
    assert summary["failures"] == 61 and summary["failures_since_last"] == 60
    assert summary["for_s"] == 60.0
    assert logger.lines[-1][2] == {"failures": 600, "after_s": 600.0, "worker_id": "w1"}


def test_a_new_outage_after_recovery_is_reported_again() -> None:
    logger = RecordingLogger()
    faults = FaultLog("housekeeping job", clock=lambda: 0.0, logger=logger, job="gauges")
    faults.failed(OSError("down"))
    faults.succeeded()
    faults.failed(OSError("down again"))
    assert [event for _, event, _ in logger.lines] == [
        "housekeeping job failing",
        "housekeeping job works again",
        "housekeeping job failing",
    ]
