"""The job sheet's own TypeScript compiles against the served OpenAPI document: its `TelemetryHistoryResponse`,
`PerformanceMetrics` and `ChartDataPoint` accept the types openapi-typescript generates for every history
variant, and real answers of each variant, embedded as constants, pass `tsc --strict`."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert

from pipeline.db.tables import backup_jobs
from tests.conftest import OUTPUT_DIR
from tests.support.devstack import PROJECT_DIR
from tests.support.probes import update_body

TOOLS_DIR = PROJECT_DIR / "tests" / "typescript"
WORK_DIR = OUTPUT_DIR / "job-sheet-types"
JOB_SHEET = PROJECT_DIR.parent / "shared" / "seed" / "machine-backup-details-job-sheet.md"
# An engine that cannot measure its processing stage reports the other three (none may come back null).
STAGE_LOADS = {"source_read": 35.0, "network": 15.0, "target_write": 80.0}

# Copied verbatim from the job sheet (Task 3.2, `useTelemetryHistory.ts`).
JOB_SHEET_TYPES = """\
interface ChartDataPoint {
  t: number;      // Seconds since start
  s: number;      // Speed in bytes/sec
  p: number;      // Progress percent
  phase: string;  // Current phase
}

interface PerformanceMetrics {
  duration_seconds: number;
  snapshots_recorded: number;
  peak_speed_bps: number;
  avg_speed_bps: number;
  min_speed_bps: number;
  peak_speed_mbps: number;
  avg_speed_mbps: number;
  chart_data: ChartDataPoint[];
}

interface TelemetryHistoryResponse {
  job_id: string;
  status: string;
  data_source: 'rolled_up' | 'live_snapshots' | 'none';
  performance_metrics?: PerformanceMetrics;
  current_state?: {
    bytes_transferred: number;
    total_bytes: number;
    transfer_speed_bps: number;
    progress_percent: number;
    current_phase: string;
  };
  chart_data?: ChartDataPoint[];
  message?: string;
}
"""

# The generated types of each variant must be assignable to the job sheet's: a field it reads as `string`
# that the document allows to be null fails here. The narrowing proves the union is tagged on data_source.
TYPE_CHECKS = """\
type Schemas = components["schemas"];
type HistoryAnswer = operations["getTelemetryHistory"]["responses"][200]["content"]["application/json"];

const rolledUpVariant = (answer: Schemas["RolledUpHistory"]): TelemetryHistoryResponse => answer;
const liveVariant = (answer: Schemas["LiveHistory"]): TelemetryHistoryResponse => answer;
const noneVariant = (answer: Schemas["NoHistory"]): TelemetryHistoryResponse => answer;
const anyAnswer = (answer: HistoryAnswer): TelemetryHistoryResponse => answer;
const metrics = (summary: Schemas["PerformanceMetrics"]): PerformanceMetrics => summary;
const point = (p: Schemas["ChartPoint"]): ChartDataPoint => p;
const currentPhase = (state: Schemas["CurrentState"]): string => state.current_phase;

function byDataSource(answer: HistoryAnswer): PerformanceMetrics | ChartDataPoint[] | string {
  switch (answer.data_source) {
    case "rolled_up":
      return answer.performance_metrics;
    case "live_snapshots":
      return answer.chart_data;
    case "none":
      return answer.message;
  }
}
"""


def _tool(name: str) -> Path:
    path = TOOLS_DIR / "node_modules" / ".bin" / name
    if shutil.which("node") is None or not path.exists():
        pytest.fail(
            f"{name} is not installed in {TOOLS_DIR} (node: {shutil.which('node') or 'missing'}); "
            "run `bash infra/install.sh` (Debian's nodejs and npm, then `npm ci` there)"
        )
    return path


def _run(command: list[str | Path], what: str) -> None:
    done = subprocess.run(command, cwd=WORK_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{what} failed ({done.returncode}) in {WORK_DIR}:\n{done.stdout}\n{done.stderr}"


def _create(agent, vm_name: str) -> str:
    response = agent.post("/backups", json={"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-ts"})
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _stream(agent, job_id: str, count: int, **extra) -> datetime:
    """`count` updates 5 s apart that end now (so the chart has a time axis); the time of the last."""
    start = datetime.now(UTC) - timedelta(seconds=5 * count)
    for i in range(1, count + 1):
        at = (start + timedelta(seconds=5 * i)).isoformat()
        response = agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=count, timestamp=at, **extra))
        assert response.status_code == 202, response.text
    return start + timedelta(seconds=5 * count)


def _history(viewer, job_id: str, data_source: str) -> dict:
    response = viewer.get(f"/telemetry/history/{job_id}")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["data_source"] == data_source, answer
    return answer


def _answers(agent, viewer, engine, scheduler_jobs, unique: str) -> dict[str, dict]:
    """A real answer of each variant, and of a running job whose row has no phase (written by plain SQL,
    as the job sheet's own backup engine writes its rows)."""
    live = _create(agent, f"ts-live-{unique}")
    _stream(agent, live, 8, stage_load=STAGE_LOADS, worker_count=4)
    done = _create(agent, f"ts-done-{unique}")
    last = _stream(agent, done, 8)
    end = (last + timedelta(seconds=1)).isoformat()
    final = agent.post(f"/telemetry/backup/{done}", json=update_body(8, total=8, status="completed", timestamp=end))
    assert final.status_code == 200, final.text
    assert scheduler_jobs.roll_up().rolled_up >= 1
    silent = _create(agent, f"ts-none-{unique}")
    phaseless = f"ts-nophase-{unique}"
    with engine.begin() as conn:
        conn.execute(
            insert(backup_jobs).values(
                id=phaseless,
                vm_name=phaseless,
                repository_id="repo-ts",
                backup_type="full",
                status="running",
                created_at=datetime.now(UTC).replace(tzinfo=None),
                current_phase=None,
            )
        )
    try:
        return {
            "live": _history(viewer, live, "live_snapshots"),
            "rolledUp": _history(viewer, done, "rolled_up"),
            "none": _history(viewer, silent, "none"),
            "phaseless": _history(viewer, phaseless, "live_snapshots"),
        }
    finally:
        with engine.begin() as conn:
            conn.execute(delete(backup_jobs).where(backup_jobs.c.id == phaseless))


def _answer_checks(answers: dict[str, dict]) -> str:
    # `satisfies` checks each literal against the generated type (no unknown field, no null where the
    # document says string); the assignment then checks the very same value against the job sheet's type.
    blocks = []
    for name, answer in answers.items():
        blocks.append(
            f"const {name}Answer = {json.dumps(answer, indent=2)} satisfies HistoryAnswer;\n"
            f"const {name}ForJobSheet: TelemetryHistoryResponse = {name}Answer;\n"
        )
    return "\n".join(blocks)


def test_job_sheet_types_compile_against_the_served_document(api, agent, viewer, engine, scheduler_jobs, unique):
    openapi_typescript, tsc = _tool("openapi-typescript"), _tool("tsc")
    answers = _answers(agent, viewer, engine, scheduler_jobs, unique)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    document = viewer.get("/schema/openapi.json")
    assert document.status_code == 200, document.text
    (WORK_DIR / "openapi.json").write_text(document.text)
    _run([openapi_typescript, "openapi.json", "--output", "api.ts"], "openapi-typescript")
    (WORK_DIR / "job_sheet.ts").write_text(
        'import type { components, operations } from "./api";\n\n'
        "// --- the job sheet's types ---\n"
        f"{JOB_SHEET_TYPES}\n"
        "// --- the generated types are the job sheet's ---\n"
        f"{TYPE_CHECKS}\n"
        "// --- real answers of this API ---\n"
        f"{_answer_checks(answers)}"
    )
    options = ["--strict", "--noEmit", "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler"]
    _run([tsc, *options, "job_sheet.ts"], "tsc --strict")
    assert answers["phaseless"]["current_state"]["current_phase"] == ""
    assert answers["live"]["current_state"]["stage_load"] == STAGE_LOADS


def test_job_sheet_types_here_are_the_job_sheets_own():
    if not JOB_SHEET.exists():
        pytest.skip(f"the job sheet is not beside this checkout ({JOB_SHEET})")
    assert JOB_SHEET_TYPES in JOB_SHEET.read_text()
