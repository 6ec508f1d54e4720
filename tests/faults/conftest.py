"""Fixtures for the fault-injection tests: the emulated account with the roles and database they use."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Estate
from tests.faults.support import ROLES


@pytest.fixture
def orders(estate: Estate) -> dict[str, Any]:
    for role in ROLES:
        estate.role(role, path="/workloads/")
    return estate.postgres("orders-prod")
