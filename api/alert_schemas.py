"""The alert API's bodies as msgspec Structs: alerts, silences, rule configurations, and the webhook's payload.

Request bodies are strict (unknown fields refused, bounds in the document): names are 1-255 characters
without control characters, free text is bounded, rules, severities and channels are the vocabulary's
words, and a rule's `params` are that rule's own keys with their bounds (the body is a union tagged on
`rule`). Listed in `api.schemas.CONTRACT_TYPES`, so their component schemas are msgspec's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from pipeline.alerts.vocabulary import AlertState, Channel, Rule, Severity
from pipeline.ingest.models import END, Name, Timestamp

__all__ = [
    "ACTOR_PATTERN",
    "ALERT_CONTRACT_TYPES",
    "AcknowledgeBody",
    "Alert",
    "AlertWithHistory",
    "AlertList",
    "AlertRuleConfig",
    "AlertRuleConfigs",
    "RuleOverrideBody",
    "Silence",
    "SilenceBody",
    "SilenceList",
    "WebhookNotification",
]

ACTOR_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,255}" + END
Actor = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=ACTOR_PATTERN,
        description="Who does this (a person or a tool): 1-255 characters, no control characters",
    ),
]
_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*" + END  # tabs and line feeds allowed, other control characters not
Comment = Annotated[str, Meta(max_length=1000, pattern=_TEXT, description="Up to 1000 characters")]
Reason = Annotated[str, Meta(min_length=1, max_length=1000, pattern=_TEXT, description="1-1000 characters")]
Minutes = Annotated[float, Meta(ge=1, le=10_080, description="Minutes, 1 to 10,080 (a week)")]
WindowEnd = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]" + END, description='"HH:MM", UTC')]


# --- alerts --------------------------------------------------------------------------------------------


class Acknowledgement(Struct):
    """Who acknowledged the alert, when, and what they said (cleared when the alert fires anew)."""

    at: datetime
    by: str
    comment: str


class Alert(Struct):
    """An alert: one per rule and subject (a machine, a machine's job type, a job, a pipeline component)."""

    id: int
    rule: Rule
    state: AlertState
    severity: Severity
    vm_name: str | None
    job_id: str | None
    job_type: str | None
    summary: str
    details: dict[str, Any]
    """What the rule measured (ages, ratios, counts), by name."""
    started_at: datetime
    """When this episode began firing."""
    resolved_at: datetime | None
    last_evaluated_at: datetime
    silenced: bool
    """An active silence matches it now: its notifications are withheld (it still shows)."""
    acknowledgement: Acknowledgement | None
    dashboard_url: str


class FiringCounts(Struct):
    critical: int
    warning: int
    info: int


class AlertList(Struct):
    """A page of alerts (firing first, then critical before warning before info, then the newest start);
    `total` counts every match; `firing` the firing alerts by severity among those of `rule` and `vm_name`
    (every firing alert when neither is given)."""

    alerts: list[Alert]
    total: int
    firing: FiringCounts


class AlertTransition(Struct):
    """A change of the alert: fired, refired (again within the hold-down), resolved, escalated, deescalated;
    `silenced`: a silence withheld what it would have notified."""

    kind: str
    severity: Severity
    summary: str
    silenced: bool
    at: datetime


class AlertDelivery(Struct):
    """One notification on one channel (the outbox): pending until sent, or refused by the receiver."""

    channel: Channel
    event: AlertState
    idempotency_key: str
    state: Literal["pending", "sent", "refused"]
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


class AlertWithHistory(Alert):
    """An alert with its history: transitions and deliveries, oldest first (the newest 1,000 of each)."""

    transitions: list[AlertTransition]
    deliveries: list[AlertDelivery]


class AcknowledgeBody(Struct, forbid_unknown_fields=True):
    """Acknowledge an alert: who, and why (replaces an earlier acknowledgement)."""

    by: Actor
    comment: Comment = ""


# --- silences ------------------------------------------------------------------------------------------


class Silence(Struct):
    """A silence: alerts of this machine and/or rule (null: any) notify nothing from `starts_at` to
    `ends_at`, unless ended earlier (`ended_at`, `ended_by`); `active`: in force now."""

    id: int
    vm_name: str | None
    rule: Rule | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    active: bool


class SilenceList(Struct):
    """Silences, newest first; `total` counts every match."""

    silences: list[Silence]
    total: int


class SilenceBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """A silence of a machine (`vm_name`), a rule, or a rule on one machine: at least one of the two. It
    starts at `starts_at` (default now) and lasts until `ends_at` or for `duration_seconds` (one of the
    two), from 60 seconds to 366 days, and must end in the future (else 400)."""

    reason: Reason
    created_by: Actor
    vm_name: Name | None = None
    rule: Rule | None = None
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    duration_seconds: Annotated[int, Meta(ge=60, le=366 * 86_400)] | None = None


# --- rules ---------------------------------------------------------------------------------------------


class RuleOverride(Struct):
    """An override set through the API, for one machine or (`vm_name` null) every machine; a field left out
    is inherited from the settings."""

    vm_name: str | None
    updated_by: str
    updated_at: datetime
    enabled: bool | UnsetType = UNSET
    severity: Severity | UnsetType = UNSET
    params: dict[str, float | int | str | None] | UnsetType = UNSET
    channels: list[Channel] | None | UnsetType = UNSET


class AlertRuleConfig(Struct):
    """A rule as it applies to every machine (built-in defaults, then `SENDENSE_ALERT_RULES`, then the API's
    override for every machine), and every override; `channels` null: every configured channel."""

    rule: Rule
    enabled: bool
    severity: Severity
    params: dict[str, float | int | str | None]
    channels: list[Channel] | None
    overrides: list[RuleOverride]


class ChannelStatus(Struct):
    """A notification channel: configured (its settings are set) or not, and the lowest severity it is sent."""

    configured: bool
    min_severity: Severity


class ChannelsStatus(Struct):
    webhook: ChannelStatus
    email: ChannelStatus
    alertmanager: ChannelStatus


class AlertRuleConfigs(Struct):
    rules: list[AlertRuleConfig]
    channels: ChannelsStatus


class RpoParams(Struct, forbid_unknown_fields=True):
    critical_ratio: CriticalRatio | UnsetType = UNSET


Factor = Annotated[float, Meta(gt=1, le=100, description="Overrunning past this × the usual duration")]
Runs = Annotated[int, Meta(ge=1, le=50, description="Completed runs the usual duration is the median of")]
MinRuns = Annotated[int, Meta(ge=1, le=50, description="Completed runs needed (at most `runs`)")]
CriticalRatio = Annotated[float, Meta(gt=1, le=100, description="Critical above this × the RPO")]


class OverrunParams(Struct, forbid_unknown_fields=True):
    factor: Factor | UnsetType = UNSET
    runs: Runs | UnsetType = UNSET
    min_runs: MinRuns | UnsetType = UNSET
    window_end: WindowEnd | None | UnsetType = UNSET
    """The backup window's end: a job whose ETA lies past it is overrunning (null: no window)."""


class MinutesParams(Struct, forbid_unknown_fields=True):
    minutes: Minutes | UnsetType = UNSET


class _OverrideFields(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="rule"):
    updated_by: Actor
    vm_name: Name | None = None
    """The machine this override is for; null or left out: every machine."""
    enabled: bool | UnsetType = UNSET
    severity: Severity | UnsetType = UNSET
    channels: Annotated[list[Channel], Meta(max_length=3)] | None | UnsetType = UNSET
    """The channels this rule's notifications go to (each once; `[]`: none, the alerts only show); null: every
    configured channel."""


class JobFailedOverride(_OverrideFields, tag="job_failed"):
    """`job_failed` has no params."""


class JobAnomalousOverride(_OverrideFields, tag="job_anomalous"):
    """`job_anomalous` has no params."""


class RpoOverride(_OverrideFields, tag="rpo"):
    params: RpoParams | UnsetType = UNSET


class JobOverrunningOverride(_OverrideFields, tag="job_overrunning"):
    params: OverrunParams | UnsetType = UNSET


class JobStalledOverride(_OverrideFields, tag="job_stalled"):
    params: MinutesParams | UnsetType = UNSET
    """`minutes` without bytes advancing while updates arrive."""


class JobPendingOverride(_OverrideFields, tag="job_pending_too_long"):
    params: MinutesParams | UnsetType = UNSET
    """`minutes` since creation without telemetry."""


class NeverBackedUpOverride(_OverrideFields, tag="never_backed_up"):
    """`never_backed_up` has no params (it uses the machine's RPO)."""


class RollupSetAsideOverride(_OverrideFields, tag="rollup_set_aside"):
    """`rollup_set_aside` has no params."""


class PipelineUnhealthyOverride(_OverrideFields, tag="pipeline_unhealthy"):
    params: MinutesParams | UnsetType = UNSET
    """`minutes` a store is unreachable or a commit queue full before this fires."""


RuleOverrideBody = (
    JobFailedOverride
    | JobAnomalousOverride
    | RpoOverride
    | JobOverrunningOverride
    | JobStalledOverride
    | JobPendingOverride
    | NeverBackedUpOverride
    | RollupSetAsideOverride
    | PipelineUnhealthyOverride
)
"""`PUT /alert-rules`: the override of one rule (`rule` says which, and which `params` it has)."""


# --- the webhook ---------------------------------------------------------------------------------------


class WebhookNotification(Struct, forbid_unknown_fields=True):
    """What the pipeline POSTs to `SENDENSE_ALERT_WEBHOOK_URL` for every notification (fired or resolved),
    once per transition: a receiver drops a repeat (a retry after a timeout) by `idempotency_key`."""

    idempotency_key: str
    """`sendense-alert-{alert_id}-{n}`: the alert's n-th notification, the same on every channel."""
    alert_id: int
    rule: Rule
    state: AlertState
    severity: Severity
    vm_name: str | None
    job_id: str | None
    job_type: str | None
    summary: str
    started_at: datetime
    resolved_at: datetime | None
    notified_at: datetime
    dashboard_url: str
    api_path: str
    """`/api/v1/alerts/{alert_id}`: the alert with its transitions and deliveries."""


ALERT_CONTRACT_TYPES: tuple[Any, ...] = (
    AlertList,
    AlertWithHistory,
    Alert,
    AcknowledgeBody,
    Silence,
    SilenceList,
    SilenceBody,
    AlertRuleConfig,
    AlertRuleConfigs,
    RuleOverrideBody,
    WebhookNotification,
)
