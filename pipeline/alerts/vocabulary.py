"""The words of alerting: rules, severities, states, a rule's configuration, a condition a rule found."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "CHANNELS",
    "DEFAULT_RULES",
    "RULES",
    "SEVERITIES",
    "AlertState",
    "Channel",
    "Condition",
    "Rule",
    "RuleConfig",
    "Severity",
    "severity_rank",
]

Rule = Literal[
    "job_failed",
    "job_anomalous",
    "rpo",
    "job_overrunning",
    "job_stalled",
    "job_pending_too_long",
    "never_backed_up",
    "rollup_set_aside",
    "pipeline_unhealthy",
]
RULES: tuple[str, ...] = (
    "job_failed",
    "job_anomalous",
    "rpo",
    "job_overrunning",
    "job_stalled",
    "job_pending_too_long",
    "never_backed_up",
    "rollup_set_aside",
    "pipeline_unhealthy",
)
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
AlertState = Literal["firing", "resolved"]
Channel = Literal["webhook", "email", "alertmanager"]
CHANNELS: tuple[str, ...] = ("webhook", "email", "alertmanager")


def severity_rank(severity: str) -> int:
    """0 for info, 1 warning, 2 critical: routing sends a channel what reaches its minimum."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """One rule's settings: on or off, its severity, its thresholds, the channels it goes to (None: all)."""

    enabled: bool = True
    severity: str = "warning"
    params: dict[str, Any] = field(default_factory=dict)
    channels: tuple[str, ...] | None = None

    def merged(self, override: dict[str, Any] | None) -> RuleConfig:
        """This configuration with an override's fields (from settings or the API) on top."""
        if not override:
            return self
        channels = override.get("channels", self.channels)
        return replace(
            self,
            enabled=override.get("enabled", self.enabled) if override.get("enabled") is not None else self.enabled,
            severity=override.get("severity") or self.severity,
            params={**self.params, **(override.get("params") or {})},
            channels=None if channels is None else tuple(channels),
        )


DEFAULT_RULES: dict[str, RuleConfig] = {
    "job_failed": RuleConfig(severity="critical"),
    "job_anomalous": RuleConfig(severity="warning"),
    # Warning above 1× the objective, critical above `critical_ratio` × (Acronis's overdue bands).
    "rpo": RuleConfig(severity="warning", params={"critical_ratio": 2.0}),
    "job_overrunning": RuleConfig(
        severity="warning", params={"factor": 2.0, "runs": 10, "min_runs": 3, "window_end": None}
    ),
    "job_stalled": RuleConfig(severity="warning", params={"minutes": 10.0}),
    "job_pending_too_long": RuleConfig(severity="warning", params={"minutes": 30.0}),
    "never_backed_up": RuleConfig(severity="warning"),
    "rollup_set_aside": RuleConfig(severity="warning"),
    "pipeline_unhealthy": RuleConfig(severity="critical", params={"minutes": 5.0}),
}
"""Every rule is on by default; `params` are its thresholds (minutes, factors) as the API shows them."""


@dataclass(frozen=True, slots=True)
class Condition:
    """What a rule found for one key: the alert that should be firing now."""

    rule: str
    key: str
    severity: str
    summary: str
    vm_name: str | None = None
    job_id: str | None = None
    job_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
