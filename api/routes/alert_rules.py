"""`/alert-rules`: every rule's configuration and the channels; an operator's override of one rule."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import Controller, get, put
from litestar.openapi.spec import Example
from litestar.params import Body
from msgspec import UNSET
from sqlalchemy import Engine

from api.alert_schemas import AlertRuleConfig, AlertRuleConfigs, RuleOverrideBody
from api.errors import bad_request
from api.openapi import errors, strict_union_body
from api.schemas import to_body
from pipeline.alerts.store import AlertStore, RuleConfigs
from pipeline.read.alerts import alert_rules
from pipeline.settings import AlertSettings, Settings

__all__ = ["AlertRuleController", "override_config", "rule_of"]

_EXAMPLES = [
    Example(
        summary="no job_failed alerts for one machine",
        value={"rule": "job_failed", "vm_name": "lab-vm-3", "enabled": False, "updated_by": "jane"},
    ),
    Example(
        summary="stalled after 20 minutes, by e-mail, everywhere",
        value={"rule": "job_stalled", "params": {"minutes": 20}, "channels": ["email"], "updated_by": "jane"},
    ),
]


def rule_of(body: Any) -> str:
    """The rule an override body is for (the union's tag, which msgspec keeps on the type)."""
    return type(body).__struct_config__.tag


def override_config(body: Any) -> dict[str, Any]:
    """The fields an override body sets (left out: inherited), as stored."""
    config: dict[str, Any] = {}
    for name in ("enabled", "severity", "channels"):
        value = getattr(body, name)
        if value is not UNSET:
            config[name] = value
    if config.get("channels"):  # each once, in the order given
        config["channels"] = list(dict.fromkeys(config["channels"]))
    params = getattr(body, "params", UNSET)
    if params is not UNSET and (values := msgspec.to_builtins(params)):
        config["params"] = values
    return config


def _rules(engine: Engine, alerts: AlertSettings, only: str | None = None) -> dict:
    minimums = {
        "webhook": alerts.webhook_min_severity,
        "email": alerts.email_min_severity,
        "alertmanager": alerts.alertmanager_min_severity,
    }
    return alert_rules(engine, alerts.rules, alerts.channels(), minimums, only=only)


def _check_overrun(engine: Engine, store: AlertStore, alerts: AlertSettings, body: Any, config: dict) -> None:
    """`min_runs` above `runs` would keep job_overrunning from ever firing on duration: refused."""
    rule = rule_of(body)
    if rule != "job_overrunning" or "params" not in config:
        return
    stored = store.rule_configs(alerts.rules).overrides
    configs = RuleConfigs(alerts.rules, {**stored, (rule, body.vm_name or ""): config})
    params = configs(rule, body.vm_name).params
    if int(params.get("min_runs", 3)) > int(params.get("runs", 10)):
        raise bad_request(
            f"params: min_runs ({params.get('min_runs')}) may not exceed runs ({params.get('runs')}), "
            "as this rule would then apply (runs and min_runs as merged with the settings)"
        )


class AlertRuleController(Controller):
    path = "/alert-rules"
    tags = ["alerts"]

    @get(operation_id="listAlertRules", responses=errors(401, 503))
    async def list(self, engine: Engine, settings: Settings) -> AlertRuleConfigs:
        """Every rule as it applies to every machine (built-in defaults, then `SENDENSE_ALERT_RULES`, then the
        API's override for every machine), each with the API's overrides (`vm_name` null: every machine),
        and the channels: configured or not, and the lowest severity each is sent."""
        return to_body(await to_thread.run_sync(_rules, engine, settings.alerts), AlertRuleConfigs)

    @put(
        operation_id="setAlertRule",
        dto=strict_union_body(RuleOverrideBody),
        return_dto=None,
        responses=errors(400, 401, 403, 413, 503),
    )
    async def set(
        self,
        engine: Engine,
        settings: Settings,
        alert_store: AlertStore,
        data: Annotated[RuleOverrideBody, Body(examples=_EXAMPLES)],
    ) -> AlertRuleConfig:
        """Replace the override of one rule for one machine (`vm_name`) or every machine (`vm_name` null or
        left out): the fields given are set, those left out inherited; a body with none of `enabled`,
        `severity`, `params`, `channels` removes the override. `params` are the rule's own thresholds. The
        next evaluation applies it. Needs an operator token."""
        config = override_config(data)
        await to_thread.run_sync(_check_overrun, engine, alert_store, settings.alerts, data, config)
        rule = rule_of(data)
        await to_thread.run_sync(alert_store.set_rule_override, rule, data.vm_name, config, data.updated_by)
        [view] = (await to_thread.run_sync(_rules, engine, settings.alerts, rule))["rules"]
        return to_body(view, AlertRuleConfig)
