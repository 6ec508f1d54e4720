"""Company identities for requests that the person did not sign themselves (Slack, chat-ops bots).

A Slack member becomes a company identity through their verified email address (Slack's
``users.info``), looked up in the people directory: one JSON document in SSM Parameter Store that
names, per identity, the IAM role that receives their grants and the groups they belong to. The
same Cedar policies then apply as to a signed API request, with the groups' provenance recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from accessctl.errors import ForbiddenError, TransientError
from accessctl.models import EMAIL_PATTERN, Caller, Requester, SlackOrigin
from accessctl.principals import lookup_role

DIRECTORY_MAX_AGE_SECONDS = 300  # a directory change reaches every function within five minutes
SLACK_USER_CACHE_SECONDS = 600

ROLE_NAME_PATTERN = r"^[A-Za-z0-9+=,.@_-]{1,64}$"
GROUP_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"

Identity = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254, to_lower=True)]


class DirectoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Annotated[str, StringConstraints(pattern=ROLE_NAME_PATTERN)]
    groups: list[Annotated[str, StringConstraints(pattern=GROUP_PATTERN)]] = Field(default_factory=list)


class PeopleDirectory(BaseModel):
    """``{"people": {"alice@example.com": {"role": "dba-alice", "groups": ["dba"]}}}``"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    people: dict[Identity, DirectoryEntry]

    def entry(self, identity: str) -> DirectoryEntry:
        found = self.people.get(identity.lower())
        if found is None:
            raise ForbiddenError(f"{identity} is not in the people directory; ask an accessctl admin to add you")
        return found


def load_directory(parameter_name: str) -> PeopleDirectory:
    """The directory from SSM (cached by Powertools for a few minutes)."""
    try:
        raw = parameters.get_parameter(parameter_name, transform="json", max_age=DIRECTORY_MAX_AGE_SECONDS)
    except parameters.exceptions.GetParameterError as error:
        raise TransientError(f"the people directory could not be read: {error}") from error
    try:
        return PeopleDirectory.model_validate(raw)
    except ValidationError as error:
        # A broken directory refuses everyone rather than guessing anyone's role or groups.
        raise TransientError(f"the people directory is not valid: {error.error_count()} error(s)") from error


@dataclass(frozen=True)
class SlackMember:
    """What Slack's users.info says about a workspace member (only what identity needs)."""

    user_id: str
    team_id: str
    email: str | None
    email_confirmed: bool
    deleted: bool = False
    is_bot: bool = False
    is_guest: bool = False


def slack_identity(member: SlackMember, team_id: str) -> str:
    """The company identity of a Slack member: their confirmed email, in the one allowed workspace."""
    if member.team_id != team_id:
        raise ForbiddenError("this Slack workspace is not allowed to use accessctl")
    if member.deleted or member.is_bot or member.is_guest:
        raise ForbiddenError("only active, full members of the workspace can use accessctl")
    if not member.email or not member.email_confirmed or not re.match(EMAIL_PATTERN, member.email):
        raise ForbiddenError("your Slack account has no confirmed email address; accessctl cannot tell who you are")
    return member.email.lower()


class SlackMemberCache:
    """users.info answers, kept for a few minutes per process (Slack rate-limits users.info)."""

    def __init__(self, fetch: Callable[[str], SlackMember], ttl_seconds: int = SLACK_USER_CACHE_SECONDS) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._members: dict[str, tuple[float, SlackMember]] = {}

    def get(self, user_id: str) -> SlackMember:
        now = time.monotonic()
        cached = self._members.get(user_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        member = self._fetch(user_id)
        self._members[user_id] = (now, member)
        return member


def requester_from_slack(
    member: SlackMember, channel_id: str | None, team_id: str, directory: PeopleDirectory
) -> tuple[Requester, DirectoryEntry]:
    identity = slack_identity(member, team_id)
    entry = directory.entry(identity)
    requester = Requester(
        identity=identity,
        groups=sorted(entry.groups),
        source=f"people directory, for the confirmed email of Slack user {member.team_id}/{member.user_id}",
        slack=SlackOrigin(team_id=member.team_id, user_id=member.user_id, channel_id=channel_id),
    )
    return requester, entry


def requester_for_bot(
    bot: Caller, on_behalf_of: str, bots: frozenset[str], directory: PeopleDirectory
) -> tuple[Requester, DirectoryEntry]:
    """A chat-ops bot asking for a named person: only bots on the allow-list, only known people."""
    if bot.role_arn is None or bot.role_arn not in bots:
        raise ForbiddenError("this principal is not an allowed chat-ops bot: it cannot ask on behalf of others")
    entry = directory.entry(on_behalf_of)
    requester = Requester(
        identity=on_behalf_of.lower(),
        groups=sorted(entry.groups),
        source=f"people directory, for the person named by chat-ops bot {bot.role_arn}",
        via=bot.principal_arn,
    )
    return requester, entry


def caller_for_directory_role(entry: DirectoryEntry, iam: Any, *, account_id: str, opt_in_tag_key: str) -> Caller:
    """The role a directory entry names, as the principal that receives the grant."""
    role = lookup_role(iam, entry.role)
    partition = role.arn.split(":")[1]
    return Caller(
        principal_arn=role.arn,
        account_id=account_id,
        partition=partition,
        role_name=role.name,
        role_arn=role.arn,
        opted_in=role.is_opted_in(opt_in_tag_key),
    )


def member_from_users_info(user: dict[str, Any]) -> SlackMember:
    """Slack's users.info ``user`` object -> :class:`SlackMember`."""
    profile = user.get("profile") or {}
    return SlackMember(
        user_id=str(user.get("id", "")),
        team_id=str(user.get("team_id", "")),
        email=profile.get("email"),
        email_confirmed=bool(user.get("is_email_confirmed", False)),
        deleted=bool(user.get("deleted", False)),
        is_bot=bool(user.get("is_bot", False)),
        is_guest=bool(user.get("is_restricted", False) or user.get("is_ultra_restricted", False)),
    )
