"""The fault suite at full length: acknowledged against found, for every experiment.

What it runs (the same experiments as tests/faults/, longer and bigger; see tests/support/faults.py)
    1. the API killed -9 (its whole process group) 5 times at random moments under 20 agents;
    2. InfluxDB stopped for 60 s under 20 agents, the API killed -9 during the outage, both restarted;
    3. MariaDB stopped for 30 s under 20 agents, half of them creating their jobs during the outage and
       the other half finishing theirs during it, with a real scheduler process running throughout;
    4. three scheduler processes rolling up 200 finished jobs of 2,000 points each while one of them,
       at random, is killed -9 50 times at random moments and restarted.
Each agent sends single updates with unique timestamps and sends each one again until it is
acknowledged; afterwards the acknowledged timestamps are looked up in InfluxDB (or, once a job is
rolled up, counted in its summary). Prints one table: acknowledged, found, lost, answers by status.

Usage
    .venv/bin/python bench/faults.py [--quick] [--seed N]
    --quick runs the CI lengths instead (10 agents, 10 s outages, 10 scheduler kills).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time

import _common as c

from pipeline.db.engine import create_db_engine
from pipeline.scheduler import SchedulerJobs
from pipeline.settings import load_settings
from pipeline.tsdb.influx import SyncInflux
from tests.support.faults import (
    Outcome,
    api_kill_experiment,
    influx_outage_experiment,
    mysql_outage_experiment,
    scheduler_kill_experiment,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI lengths")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random kill schedules")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    quick = args.quick
    agents = 10 if quick else 20
    prefix = c.run_id("faults")
    logs = c.logs_dir()
    outcomes: list[Outcome] = []
    env = {"SENDENSE_RETRY_AFTER": "1"}
    with c.bench_stack(env) as stack, c.api_process(stack, "granian") as _api:
        settings = load_settings()
        engine = create_db_engine(settings.mysql, pool_size=2)
        influx = SyncInflux(settings.influx)
        unbounded = dataclasses.replace(settings.scheduler, rollup_batch=1_000_000)
        scheduler = SchedulerJobs(dataclasses.replace(settings, scheduler=unbounded))
        try:
            c.log(f"seed {seed}; experiment 1: API kills")
            outcomes.append(
                api_kill_experiment(
                    stack,
                    influx,
                    engine,
                    scheduler.roll_up,
                    prefix=f"{prefix}-kill",
                    agents=agents,
                    kills=5,
                    gap=(1.0, 2.0) if quick else (2.0, 6.0),
                    log_dir=logs,
                    port=c.API_PORT + 20,
                    seed=seed,
                )  # fmt: skip
            )
            c.log("experiment 2: InfluxDB outage with an API kill")
            outcomes.append(
                influx_outage_experiment(
                    stack,
                    influx,
                    engine,
                    scheduler.roll_up,
                    prefix=f"{prefix}-influx",
                    agents=agents,
                    outage=10.0 if quick else 60.0,
                    log_dir=logs,
                    port=c.API_PORT + 21,
                    seed=seed,
                )  # fmt: skip
            )
            c.log("experiment 3: MariaDB outage")
            outcomes.append(
                mysql_outage_experiment(
                    stack,
                    influx,
                    engine,
                    prefix=f"{prefix}-mysql",
                    agents=agents,
                    outage=10.0 if quick else 30.0,
                    log_dir=logs,
                    port=c.API_PORT + 22,
                )  # fmt: skip
            )
            c.log("experiment 4: scheduler kills")
            t = time.perf_counter()
            outcomes.append(
                scheduler_kill_experiment(
                    stack,
                    influx,
                    engine,
                    api_url=stack.api_url,
                    prefix=f"{prefix}-sched",
                    jobs=40 if quick else 200,
                    points=1000 if quick else 2000,
                    schedulers=3,
                    kills=10 if quick else 50,
                    gap=(0.1, 0.6),
                    log_dir=logs,
                    seed=seed,
                )  # fmt: skip
            )
            c.log(f"scheduler experiment took {time.perf_counter() - t:.0f} s")
        finally:
            scheduler.close()
            influx.close()
            engine.dispose()
            c.cleanup_jobs(prefix)

    rows = []
    for o in outcomes:
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(o.statuses.items())) or "-"
        rows.append([o.name, o.acknowledged, o.found, o.lost, o.kills, o.connection_errors, answers])
    print(
        c.table(
            ["experiment", "acknowledged", "found", "lost", "kills", "cut requests", "answers by status"],
            rows,
            f"\nFault suite ({'CI lengths' if quick else 'full length'}), seed {seed}",
        )
    )
    for o in outcomes:
        print(f"\n{o.name}")
        for key, value in o.figures.items():
            print(f"  {key}: {value}")
        for problem in o.problems:
            print(f"  PROBLEM: {problem}")
        if o.missing:
            print(f"  MISSING per job: {o.missing}")
    failed = [o.name for o in outcomes if o.lost or o.missing or o.problems or 500 in o.statuses]
    print("\nverdict:", "0 acknowledged points lost in every experiment" if not failed else f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
