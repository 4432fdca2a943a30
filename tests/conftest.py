"""Shared test configuration: hypothesis profiles and deterministic seeds."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Fewer examples in CI (2 CPU cores, a time budget); more when run locally.
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
