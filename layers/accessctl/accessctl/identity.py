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


def configured_directory(parameter_name: str | None) -> PeopleDirectory:
    """The deployment's directory; without one, nobody relayed by Slack or a bot can be identified."""
    if not parameter_name:
        raise ForbiddenError(
            "no people directory is configured (PeopleDirectoryParameter): accessctl cannot tell who you are"
        )
    return load_directory(parameter_name)


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


class SlackUser(BaseModel):
    """What Slack's ``users.info`` says about a workspace member (the fields identity needs)."""

    model_config = ConfigDict(frozen=True)

    id: str
    team_id: str | None = None
    email: str | None = None  # profile.email: needs users:read.email
    email_confirmed: bool | None = None  # is_email_confirmed, when Slack says
    deleted: bool = False
    is_bot: bool = False
    is_restricted: bool = False  # multi-channel guest
    is_ultra_restricted: bool = False  # single-channel guest
    real_name: str | None = None

    @property
    def is_guest(self) -> bool:
        return self.is_restricted or self.is_ultra_restricted

    @classmethod
    def of(cls, user: dict[str, Any]) -> SlackUser:
        profile = user.get("profile") or {}
        return cls(
            id=str(user["id"]),
            team_id=user.get("team_id"),
            email=profile.get("email"),
            email_confirmed=user.get("is_email_confirmed"),
            deleted=bool(user.get("deleted", False)),
            is_bot=bool(user.get("is_bot", False)),
            is_restricted=bool(user.get("is_restricted", False)),
            is_ultra_restricted=bool(user.get("is_ultra_restricted", False)),
            real_name=user.get("real_name") or profile.get("real_name"),
        )


def slack_identity(member: SlackUser, team_id: str) -> str:
    """The company identity of a Slack member: their confirmed email, in the one allowed workspace."""
    if member.team_id != team_id:
        raise ForbiddenError("this Slack workspace is not allowed to use accessctl")
    if member.deleted or member.is_bot or member.is_guest:
        raise ForbiddenError("only active, full members of the workspace can use accessctl")
    # Unknown confirmation counts as unconfirmed: an email nobody confirmed says nothing about who this is.
    if not member.email or member.email_confirmed is not True or not re.match(EMAIL_PATTERN, member.email):
        raise ForbiddenError("your Slack account has no confirmed email address; accessctl cannot tell who you are")
    return member.email.lower()


class SlackUserCache:
    """users.info answers, kept for a few minutes per process (Slack rate-limits users.info)."""

    def __init__(self, fetch: Callable[[str], SlackUser], ttl_seconds: int = SLACK_USER_CACHE_SECONDS) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._members: dict[str, tuple[float, SlackUser]] = {}

    def get(self, user_id: str) -> SlackUser:
        now = time.monotonic()
        cached = self._members.get(user_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        member = self._fetch(user_id)
        self._members[user_id] = (now, member)
        return member


def requester_from_slack(
    member: SlackUser, channel_id: str | None, team_id: str, directory: PeopleDirectory
) -> tuple[Requester, DirectoryEntry]:
    identity = slack_identity(member, team_id)
    entry = directory.entry(identity)
    requester = Requester(
        identity=identity,
        groups=sorted(entry.groups),
        source=f"people directory, for the confirmed email of Slack user {team_id}/{member.id}",
        slack=SlackOrigin(team_id=team_id, user_id=member.id, channel_id=channel_id),
    )
    return requester, entry


def requester_for_bot(
    bot: Caller, on_behalf_of: str, bots: frozenset[str], directory: Callable[[], PeopleDirectory]
) -> tuple[Requester, DirectoryEntry]:
    """A chat-ops bot asking for a named person: only bots on the allow-list (checked before the
    directory is read), only people the directory knows."""
    if bot.role_arn is None or bot.role_arn not in bots:
        raise ForbiddenError("this principal is not an allowed chat-ops bot: it cannot ask on behalf of others")
    entry = directory().entry(on_behalf_of)
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
