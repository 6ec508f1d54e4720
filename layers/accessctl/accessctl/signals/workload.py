"""Workloads: the IAM role that signed the request, with its IAM tags as Cedar entity tags."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from accessctl.principals import lookup_role

# A role carrying this tag with value "human" is used by people: without a verified ID token its
# caller is an unverified human (who fails every human rule), never a workload.
PRINCIPAL_TYPE_TAG = "accessctl-principal-type"


class RoleFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arn: str
    account_id: str
    tags: dict[str, str]

    @property
    def human_facing(self) -> bool:
        return self.tags.get(PRINCIPAL_TYPE_TAG, "").lower() == "human" or self.name.startswith("AWSReservedSSO_")


def role_facts(iam: Any, role_name: str) -> RoleFacts:
    """The role as IAM knows it, with its tags (IAM is the source, never the caller)."""
    role = lookup_role(iam, role_name)
    account_id = role.arn.split(":")[4]
    return RoleFacts(name=role.name, arn=role.arn, account_id=account_id, tags=dict(role.tags))
