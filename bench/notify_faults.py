"""The alert-delivery fault experiment at full length: every notification arrives, counted by key.

What it runs (tests/support/notify_faults.py; `tests/faults/test_notify_faults.py` is the short version)
    Two `sendense scheduler` processes (alert interval 0.5 s, delivery interval 0.25 s, hold-down 1 s,
    retries after 0.5 s doubling to at most 2 s) with both channels configured: a webhook receiver process
    and an SMTP server process (aiosmtpd, STARTTLS, AUTH). 100 machines x 2 job types fail through the API
    (200 job_failed alerts fire), and 12 s after every alert has fired complete (the 200 alerts resolve):
    400 notifications per channel. Meanwhile the webhook receiver answers 500 from the start until 30 s
    after the alerts fired, the SMTP server is stopped for 15 s from 10 s after they fired (so the resolves
    wait for it), and one scheduler at random is killed -9 (its process group) 20 times at random moments
    and started again. Afterwards each channel's
    outbox is compared, key by key, with what its receiver accepted (the webhook's 200s, the SMTP server's
    250s): lost (in the outbox, never accepted) and duplicates (accepted more than once: a sender killed
    between the receiver's acceptance and its own commit, or a retry after a lost answer). Every webhook
    body is checked against the stored payload and its signature.

Usage
    .venv/bin/python bench/notify_faults.py [--machines 100] [--kills 20] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys

import _common as c

from pipeline.db.engine import create_db_engine
from pipeline.settings import load_settings
from tests.support.notify_faults import delivery_fault_experiment

WEBHOOK_PORT = 28095
SMTP_PORT = 28025


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=100, help="machines; each has 2 alerts (backup, replication)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--webhook-failing", type=float, default=30.0, help="seconds the webhook answers 500")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(c.machine_note())
    prefix = c.run_id("notify")
    with c.bench_stack() as stack, c.api_process(stack, "granian"):
        engine = create_db_engine(load_settings().mysql, pool_size=2)
        try:
            c.log(f"seed {seed}: {args.machines * 2} alerts, {args.kills} scheduler kills")
            outcome = delivery_fault_experiment(
                stack, engine, api_url=stack.api_url, prefix=prefix, machines=args.machines, kills=args.kills,
                gap=(1.0, 3.0), webhook_failing=args.webhook_failing, smtp_stopped=(10.0, 15.0), resolve_after=12.0,
                log_dir=c.logs_dir(), webhook_port=WEBHOOK_PORT, smtp_port=SMTP_PORT, seed=seed, timeout=300.0,
            )  # fmt: skip
        finally:
            engine.dispose()
            c.cleanup_jobs(f"backup-{prefix}")
            c.cleanup_jobs(f"replication-{prefix}")
    rows = [
        [n.channel, n.outbox, n.received_distinct, n.lost, n.duplicates, n.not_sent, n.failures_seen]
        for n in outcome.channels.values()
    ]
    headers = ["channel", "in the outbox", "received (distinct keys)", "lost", "duplicates", "not sent", "errors"]
    print(c.table(headers, rows, f"\n{outcome.name} (seed {seed}); {outcome.kills} kills"))
    for key, value in outcome.figures.items():
        print(f"  {key}: {value}")
    for problem in outcome.problems:
        print(f"  PROBLEM: {problem}")
    lost = sum(n.lost for n in outcome.channels.values())
    duplicates = sum(n.duplicates for n in outcome.channels.values())
    print(
        "\nverdict:",
        f"{'0 lost' if not lost else f'{lost} LOST'}, {duplicates} duplicates "
        f"({'none' if not duplicates else 'each a kill between acceptance and commit; distinct counts exact'})",
        "" if not outcome.problems else "; FAILED",
    )
    return 1 if outcome.problems else 0


if __name__ == "__main__":
    sys.exit(main())
