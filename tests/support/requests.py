"""What the use-case tests need to ask for access as a workload would: a policy engine over a few
rules written for the test (with the project's own schema), and a signed workload caller resolved
the way the API resolves one."""

from __future__ import annotations

import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from accessctl.models import Caller
from accessctl.policy import PolicyEngine
from accessctl.principals import resolve_caller
from tests.conftest import ACCOUNT_ID
from tests.support.template import PROJECT_ROOT

OPT_IN_TAG = "accessctl-grantable"


@cache
def policy_engine_for(rules: str) -> PolicyEngine:
    """An engine over ``rules`` (Cedar text) and the project's schema, parsed once per rules text."""
    directory = Path(tempfile.mkdtemp(prefix="accessctl-test-policies-"))
    shutil.copy(PROJECT_ROOT / "policies" / "schema.cedarschema", directory)
    (directory / "rules.cedar").write_text(rules, encoding="utf-8")
    return PolicyEngine.from_directory(directory)


def workload_caller(iam: Any, role_name: str, session: str = "task-1", account_id: str = ACCOUNT_ID) -> Caller:
    """A SigV4 caller signing as a session of ``role_name``, resolved against the emulated IAM."""
    signed = Caller(
        principal_arn=f"arn:aws:sts::{account_id}:assumed-role/{role_name}/{session}",
        account_id=account_id,
        partition="aws",
        role_name=role_name,
        source_ip="127.0.0.1",
    )
    return resolve_caller(signed, iam, account_id=ACCOUNT_ID, admins=frozenset(), opt_in_tag_key=OPT_IN_TAG)
