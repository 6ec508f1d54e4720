"""Database facts for policies: identifier, engine, and environment from the database's RDS tags."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from accessctl.aws import call
from accessctl.models import DatabaseTarget

ENVIRONMENT_TAG = "environment"
# An untagged database counts as production: a forgotten tag must not lift production's guardrails.
DEFAULT_ENVIRONMENT = "production"


class DatabaseFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    identifier: str
    environment: str = DEFAULT_ENVIRONMENT
    engine: str = ""
    tags: dict[str, str] = {}


def database_arn(target: DatabaseTarget) -> str:
    kind = "db" if target.kind == "instance" else "cluster"
    return f"arn:{target.partition}:rds:{target.region}:{target.account_id}:{kind}:{target.identifier}"


def database_facts(rds: Any, target: DatabaseTarget, *, environment_tag: str = ENVIRONMENT_TAG) -> DatabaseFacts:
    """What policies know about a database, read from RDS (never from the caller)."""
    listed = call(rds.list_tags_for_resource, ResourceName=database_arn(target))
    tags = {tag["Key"]: tag["Value"] for tag in listed.get("TagList", [])}
    return DatabaseFacts(
        identifier=target.identifier,
        environment=tags.get(environment_tag) or DEFAULT_ENVIRONMENT,
        engine=target.engine,
        tags=tags,
    )
