"""The bottleneck is the busiest reported stage; the simulator's jobs have the one their repository implies."""

from __future__ import annotations

import random

from pipeline.agent.curves import BOTTLENECK_BY_REPOSITORY, stage_loads
from pipeline.insight.bottleneck import bottleneck


def test_the_busiest_stage_is_the_bottleneck():
    found = bottleneck({"source_read": 35.0, "processing": 20.0, "network": None, "target_write": 78.4})
    assert found["stage"] == "target_write" and found["text"] == "Bottleneck: target 78 %"
    assert "network" not in found["loads"]


def test_no_stage_reported_means_no_bottleneck():
    assert bottleneck({"source_read": None}) is None and bottleneck({}) is None


def test_simulated_transfers_saturate_the_stage_their_repository_implies():
    rng = random.Random(1)
    for repository, stage in BOTTLENECK_BY_REPOSITORY.items():
        loads = stage_loads(rng, "transferring", stage)
        assert bottleneck(loads)["stage"] == stage, repository
