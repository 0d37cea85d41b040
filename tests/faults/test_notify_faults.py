"""Alert delivery through scheduler kills and receiver outages, short enough for CI (`bench/notify_faults.py`
runs it at full length): every notification in the outbox arrives at its receiver, counted by key."""

from __future__ import annotations

import os
import random

from tests.conftest import OUTPUT_DIR
from tests.support.notify_faults import delivery_fault_experiment

WEBHOOK_PORT = int(os.environ.get("SENDENSE_TEST_WEBHOOK_PORT", "18095")) + 10
SMTP_PORT = int(os.environ.get("SENDENSE_TEST_SMTP_PORT", "18025")) + 10


def test_every_notification_arrives_through_scheduler_kills_a_failing_webhook_and_a_stopped_smtp_server(
    stack, api, engine, unique
):
    seed = random.SystemRandom().randrange(2**32)
    print(f"fault schedule seed: {seed}")
    outcome = delivery_fault_experiment(
        stack, engine, api_url=api, prefix=f"fault-notify-{unique}", machines=20, kills=8, gap=(0.5, 1.5),
        webhook_failing=6.0, smtp_stopped=(1.0, 4.0), resolve_after=2.0, log_dir=OUTPUT_DIR,
        webhook_port=WEBHOOK_PORT, smtp_port=SMTP_PORT, seed=seed, timeout=90.0,
    )  # fmt: skip
    for count in outcome.channels.values():
        print(count)
    print(outcome.figures)
    assert outcome.kills == 8
    assert not outcome.problems, outcome.problems
    for count in outcome.channels.values():
        # None lost, and each one counted once by key at the receiver; a repeat is possible only for a
        # notification accepted in the instant before its scheduler was killed (at most one per kill).
        assert count.outbox == count.received_distinct == 2 * 40 and count.lost == 0
        assert count.duplicates <= outcome.kills
