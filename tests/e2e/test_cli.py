"""The workload's view: the `accessctl` CLI, as a container runs it at startup, against the local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from accessctl_local import LocalStack
from accessctl_local.estate import Workload, attached_policies, workload
from tests.support.stacks import demo_stack

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with demo_stack() as running:
        yield running


@pytest.fixture(scope="module")
def orders(stack: LocalStack) -> Workload:
    return workload(stack, "orders-service", session_name="container-7")


def accessctl(stack: LocalStack, identity: Workload, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI with only the workload's credentials and the API URL in its environment."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "ACCESSCTL_API_URL": stack.api_url,
        "AWS_REGION": stack.region,
        "AWS_ACCESS_KEY_ID": identity.credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": identity.credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": identity.credentials["SessionToken"],
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    executable = shutil.which("accessctl", path=os.path.dirname(sys.executable)) or "accessctl"
    return subprocess.run(
        [executable, *args], env=environ_clean(environment), capture_output=True, text=True, timeout=120
    )


def environ_clean(environment: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in environment.items() if value}


def test_given_a_workload_when_it_asks_at_startup_then_it_gets_connection_settings_with_a_token(
    stack: LocalStack, orders: Workload
) -> None:
    result = accessctl(
        stack,
        orders,
        "request",
        "--database", "orders-demo",
        "--db-user", "app_rw",
        "--duration", "10m",
        "--reason", "container startup",
        "--idempotency-key", "container-7-boot",
        "--print", "env",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert exported["PGUSER"] == "app_rw"
    assert exported["PGPORT"] == "5432"
    assert "Action=connect" in exported["PGPASSWORD"]
    assert len(attached_policies(stack, "orders-service")) == 1


def test_given_an_active_grant_when_listed_and_revoked_with_the_cli_then_it_is_gone(
    stack: LocalStack, orders: Workload
) -> None:
    listed = accessctl(stack, orders, "grants", "--json")
    assert listed.returncode == 0, listed.stderr
    (grant,) = json.loads(listed.stdout)["grants"]
    assert grant["database"] == "orders-demo"

    revoked = accessctl(stack, orders, "revoke", grant["grant_id"])
    status = accessctl(stack, orders, "status", grant["grant_id"], "--json")

    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(status.stdout)["status"] == "REVOKED"
    assert attached_policies(stack, "orders-service") == []


def test_given_a_request_no_rule_allows_when_made_with_the_cli_then_exit_code_2_and_the_reason(
    stack: LocalStack, orders: Workload
) -> None:
    result = accessctl(
        stack, orders, "request", "--database", "orders-demo", "--db-user", "postgres", "--duration", "5m",
        "--reason", "should be denied", "--wait",
    )  # fmt: skip

    assert result.returncode == 2
    assert "no rule allows role orders-service" in result.stdout + result.stderr
