"""The group commit's decisions, without a database: outcomes, newest state, snapshots, ends."""

from __future__ import annotations

from pipeline.jobs.state import Outcome, StateChange, plan_commit, plan_disks

SECOND = 1_000_000
INTERVAL = 30 * SECOND


def change(job: str = "j", at: int = 100 * SECOND, status: str = "running", disk: int | None = None, **values):
    defaults = {
        "bytes_transferred": at // SECOND,
        "total_bytes": 1000,
        "transfer_speed_bps": 5,
        "progress_percent": 1.0,
    }
    return StateChange(job, "backup", at, status, disk, current_phase="transferring", **{**defaults, **values})


def row(job: str = "j", status: str = "running", started=None, state=None, snapshot=None) -> tuple:
    return (job, status, started, state, snapshot)


def test_running_update_is_accepted_and_becomes_the_state():
    plan = plan_commit([change()], {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.outcomes == [Outcome(202, "running")]
    [written] = plan.writes
    assert written[0] == "j" and written[5] == "running" and written[9] == 100


def test_an_older_update_is_acknowledged_but_does_not_overwrite_a_newer_state():
    plan = plan_commit([change(at=80 * SECOND)], {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.outcomes == [Outcome(202, "running")]
    assert plan.writes == []


def test_a_late_update_still_ends_the_jobs_silence_on_the_servers_clock():
    # Older than the job's state, not a new start, no snapshot due: the row is still touched, which sets
    # last_seen_at (the reaper would otherwise fail a job whose agent is sending its backlog).
    plan = plan_commit(
        [change(at=80 * SECOND)], {"j": row(started=50 * SECOND, state=90 * SECOND, snapshot=79 * SECOND)}, INTERVAL
    )
    assert plan.writes == [] and plan.mirror == []
    assert plan.touches == [("running", None, None, "j")]


def test_refused_updates_do_not_count_as_hearing_from_the_job():
    plan = plan_commit([change(at=80 * SECOND)], {"j": row(status="failed")}, INTERVAL)
    assert plan.outcomes == [Outcome(409, "failed")]
    assert plan.writes == [] and plan.touches == []


def test_the_newest_of_several_changes_wins_whatever_their_order():
    changes = [change(at=120 * SECOND), change(at=110 * SECOND)]
    plan = plan_commit(changes, {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.outcomes == [Outcome(202, "running")] * 2
    assert plan.writes[0][9] == 120


def test_a_finished_job_refuses_updates_and_accepts_the_same_end_again():
    changes = [change(), change(status="completed"), change(status="failed")]
    plan = plan_commit(changes, {"j": row(status="completed")}, INTERVAL)
    assert plan.outcomes == [Outcome(409, "completed"), Outcome(200, "completed"), Outcome(409, "completed")]
    assert plan.writes == [] and plan.mirror == []


def test_an_unknown_job_is_404():
    assert plan_commit([change(job="gone")], {}, INTERVAL).outcomes == [Outcome(404, "")]


def test_a_terminal_update_ends_the_job_and_later_stamped_updates_of_the_same_commit_are_refused():
    changes = [change(at=200 * SECOND, status="completed"), change(at=150 * SECOND), change(at=250 * SECOND)]
    plan = plan_commit(changes, {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.outcomes == [Outcome(200, "completed"), Outcome(202, "completed"), Outcome(409, "completed")]
    [written] = plan.writes
    assert written[5] == "completed" and written[13] == "completed"  # status, and the phase is the status
    assert plan.ended == [("completed", "j")]
    assert plan.mirror[-1][7] == "completed"


def test_one_snapshot_row_per_interval_by_update_time():
    changes = [change(at=t * SECOND) for t in (100, 110, 129, 130, 131, 200)]
    plan = plan_commit(changes, {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert [m[2] for m in plan.mirror] == ["1970-01-01 00:01:40", "1970-01-01 00:02:10", "1970-01-01 00:03:20"]


def test_a_pending_job_starts_with_its_earliest_update():
    plan = plan_commit([change(at=120 * SECOND), change(at=100 * SECOND)], {"j": row(status="pending")}, INTERVAL)
    [written] = plan.writes
    assert written[5] == "running" and written[6] == "1970-01-01 00:01:40"


def test_a_late_update_earlier_than_the_start_moves_the_start_back():
    plan = plan_commit([change(at=40 * SECOND)], {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.writes == []
    [(status, started, snapshot, job)] = plan.touches
    assert (status, started, job) == ("running", "1970-01-01 00:00:40", "j")


def test_disk_changes_keep_their_newest_state_and_their_own_snapshot_cadence():
    changes = [change(disk=0, at=t * SECOND) for t in (100, 90, 140)]
    plan = plan_commit(changes, {"j": row(started=50 * SECOND, state=90 * SECOND)}, INTERVAL)
    assert plan.outcomes == [Outcome(202, "running")] * 3 and plan.writes == []
    disk_rows, mirror = plan_disks(plan.disk_changes, [("j", 0, 10, 5, 1.0, "running", 95 * SECOND, None)], INTERVAL)
    [(job, disk, size, sent, progress, status, at, snapshot)] = disk_rows
    assert (job, disk, sent, at) == ("j", 0, 140, "1970-01-01 00:02:20")
    assert len(mirror) == 2  # at 90 s (first snapshot of the disk) and at 140 s
