"""The channels a scheduler delivers through: one builder per channel name, used for those configured."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pipeline.alerts.delivery.channel import Channel
from pipeline.alerts.delivery.email import EmailChannel
from pipeline.alerts.delivery.webhook import WebhookChannel
from pipeline.settings import AlertSettings

__all__ = ["BUILDERS", "ChannelBuilder", "build_channels", "register"]

log = logging.getLogger(__name__)

ChannelBuilder = Callable[[AlertSettings], Channel]

BUILDERS: dict[str, ChannelBuilder] = {
    "webhook": WebhookChannel.from_settings,
    "email": EmailChannel.from_settings,
}
"""Channel name (the outbox's `channel`) → how to build it from the settings. A new channel adds itself here
(or through `register`) and to `AlertSettings.channels()`, which decides what is configured. Alertmanager's
needs the database too and is built by the scheduler (`prebuilt`)."""


def register(name: str, builder: ChannelBuilder) -> None:
    BUILDERS[name] = builder


def build_channels(
    settings: AlertSettings,
    builders: Mapping[str, ChannelBuilder] | None = None,
    prebuilt: Mapping[str, Channel] | None = None,
) -> dict[str, Channel]:
    """A channel for each one configured: `prebuilt` ones as given (the scheduler's Alertmanager channel,
    which its re-post job shares), the others from their builders. One configured without either is said
    once: its notifications stay pending in the outbox until a scheduler that has it runs."""
    builders = BUILDERS if builders is None else builders
    channels = {}
    for name in settings.channels():
        if prebuilt and name in prebuilt:
            channels[name] = prebuilt[name]
            continue
        builder = builders.get(name)
        if builder is None:
            log.warning("alert channel %s is configured but this scheduler cannot deliver it; its notifications wait",
                        name)  # fmt: skip
            continue
        channels[name] = builder(settings)
    return channels
