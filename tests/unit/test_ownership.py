"""One owner per table and per query language, and a README code map that names the whole tree:
checked on the source, so a write or a query added in the wrong place fails here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PRODUCT = ("pipeline", "api", "dashboards")
JOB_TABLES = {"backup_jobs", "backup_disks"}

# Statements and clauses only InfluxQL has (SQL shares SELECT … FROM, so those are recognised by the
# measurement they read), and $-bound parameters, which MySQL drivers do not use. Keywords in capitals,
# as every statement here is written: a log line may say "retention policy".
_INFLUXQL = re.compile(
    r"\b(SHOW\s+(SERIES|MEASUREMENTS|TAG|FIELD|RETENTION|DATABASES)|DROP\s+(SERIES|MEASUREMENT)|"
    r"RETENTION\s+POLICY|GROUP\s+BY\s+time\s*\(|FROM\s+\S*job_(telemetry|summary)\b)|[=<>]\s*\$[a-z_]+\b"
)
_SQL_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+`?(backup_jobs|backup_disks)\b", re.I)


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PRODUCT:
        for path in sorted((PROJECT / package).rglob("*.py")):
            yield path.relative_to(PROJECT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    ids = set()
    for node in nodes:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    # Attribute docstrings: a string statement right after an assignment.
    ids |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return ids


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """String literals that are code (docstrings are prose), f-string parts included."""
    prose = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node.lineno, node.value


def _core_writes(tree: ast.Module) -> Iterator[int]:
    """SQLAlchemy Core writes of a job table: update(t), insert(t), delete(t), t.update() and the like."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        first = node.args[0] if node.args else None
        if (
            isinstance(func, ast.Name)
            and func.id in {"update", "insert", "delete", "mysql_insert"}
            and isinstance(first, ast.Name)
            and first.id in JOB_TABLES
        ):
            yield node.lineno
        if (
            isinstance(func, ast.Attribute)
            and func.attr in {"update", "insert", "delete"}
            and isinstance(func.value, ast.Name)
            and func.value.id in JOB_TABLES
        ):
            yield node.lineno


def test_influxql_is_written_only_in_tsdb_queries() -> None:
    found = [
        f"{path}:{line}: {text[:80]!r}"
        for path, tree in _modules()
        if path != "pipeline/tsdb/queries.py"
        for line, text in _strings(tree)
        if _INFLUXQL.search(text)
    ]
    assert not found, "InfluxQL outside pipeline/tsdb/queries.py:\n" + "\n".join(found)


def test_the_job_tables_are_written_only_by_pipeline_jobs() -> None:
    found = [
        f"{path}:{line}"
        for path, tree in _modules()
        if not path.startswith("pipeline/jobs/")
        for line in [*(n for n, text in _strings(tree) if _SQL_WRITE.search(text)), *_core_writes(tree)]
    ]
    assert not found, "writes of backup_jobs/backup_disks outside pipeline/jobs/:\n" + "\n".join(found)


def test_the_checks_above_see_what_they_look_for() -> None:
    """Guards against the guards: the patterns catch the statements they are meant to."""
    store = dict(_modules())["pipeline/jobs/store.py"]
    assert list(_core_writes(store)), "JobStore's own SQLAlchemy writes are not recognised"
    queries = dict(_modules())["pipeline/tsdb/queries.py"]
    assert sum(bool(_INFLUXQL.search(text)) for _, text in _strings(queries)) >= 5
    assert _SQL_WRITE.search("UPDATE backup_jobs SET status = %s")


def test_the_readme_code_map_names_every_part_of_the_tree() -> None:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    code_map = readme[readme.index("Code map") : readme.index("### Acknowledgement")]
    missing = []
    for package in PRODUCT:
        for entry in sorted((PROJECT / package).iterdir()):
            if entry.name.startswith(("_", ".")) or entry.suffix not in {"", ".py"}:
                continue
            name = entry.name + ("/" if entry.is_dir() else "")
            if f"`{name}`" not in code_map and f"`{package}/{name}`" not in code_map and f"{name}`" not in code_map:
                missing.append(f"{package}/{name}")
    for folder in ("tests", "."):
        for entry in sorted((PROJECT / folder).iterdir()):
            if entry.is_dir() and not entry.name.startswith((".", "_")) and not entry.name.endswith("egg-info"):
                if entry.name in {"test-output"}:
                    continue
                path = entry.relative_to(PROJECT).as_posix()
                if f"`{path}" not in code_map:
                    missing.append(path + "/")
    assert not missing, f"README's code map does not name: {missing}"


def test_every_setting_is_read_in_settings_and_documented() -> None:
    """Environment variables are read only in pipeline/settings.py, and each one it reads is in the
    README's configuration table."""
    readers = [
        f"{path}:{node.lineno}"
        for path, tree in _modules()
        if path != "pipeline/settings.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"getenv", "environ"}
        and isinstance(node.ctx, ast.Load)
        and not _writes_environ(tree, node)
    ]
    assert not readers, f"environment read outside pipeline/settings.py: {readers}"
    settings = (PROJECT / "pipeline/settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'_env\w*\(\s*"([A-Z_]+)"', settings))
    assert len(names) > 30, names
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration") : readme.index("## Performance")]
    assert not sorted(n for n in names if f"`{n}`" not in table), "settings missing from the README's table"


def _writes_environ(tree: ast.Module, attribute: ast.Attribute) -> bool:
    """`os.environ[...] = ...` (a parent handing a setting to its children) or `{**os.environ}`
    (a child process's environment) are not reads of a setting."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Subscript) and t.value is attribute for t in node.targets
        ):
            return True
        if isinstance(node, ast.Dict):
            unpacked = [v for k, v in zip(node.keys, node.values, strict=True) if k is None]
            if any(v is attribute for v in unpacked):
                return True
    return False
