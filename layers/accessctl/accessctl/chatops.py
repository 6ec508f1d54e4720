"""The chat-ops use cases: a Slack member's request, an approver's click, a holder's extension.

Run by the Slack worker after the edge verified the delivery (``accessctl.slack_requests``).
Who is acting is always re-established here: Slack's users.info (confirmed email) and the
people directory give the identity, the role and the groups. Every answer goes back to the
person privately (ephemeral, through Slack's response_url); the approval message in the
approvers' channel is updated for everyone by the approval channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from accessctl.access_requests import submit_request
from accessctl.approvals import ApprovalChannel, Approver, VoteOutcome, cast_vote
from accessctl.chat.blocks import ChatMessage
from accessctl.chat.slack import SlackApi
from accessctl.dependencies import Dependencies, default_dependencies
from accessctl.errors import AccessctlError, ForbiddenError, NotFoundError, TransientError
from accessctl.identity import (
    DirectoryEntry,
    PeopleDirectory,
    SlackUserCache,
    caller_for_directory_role,
    configured_directory,
    requester_from_slack,
    slack_identity,
)
from accessctl.models import AccessRequestSubmission, RequestOrigin, RequestStatus
from accessctl.notify import SlackApprovalChannel
from accessctl.observability import logger, metrics
from accessctl.slack_requests import ButtonClick, SlackWork


@dataclass
class ChatOps:
    """What the worker needs: the use cases' dependencies, Slack, the directory, the channel."""

    deps: Dependencies
    slack: SlackApi
    directory_loader: Callable[[], PeopleDirectory]
    members: SlackUserCache
    approvals: ApprovalChannel | None

    def handle(self, work: SlackWork) -> dict[str, Any]:
        response_url = work.command.response_url if work.command else work.click.response_url if work.click else None
        try:
            if work.kind == "command":
                assert work.command is not None and work.submission is not None
                return self.request_access(work.command.user_id, work.command.channel_id, work.submission, response_url)
            assert work.click is not None
            return self.click(work.click)
        except TransientError as error:
            # Throttled or unreachable (e.g. Step Functions refusing the resume of a decided approval):
            # fail the invocation, so that Lambda runs it again with the same work. Each use case is
            # safe to repeat: a submission by its idempotency key, a decided approval is delivered again.
            logger.warning("slack work failed for now; the invocation is retried", extra={"kind": work.kind})
            if response_url:
                self._tell(response_url, f":hourglass: not finished yet ({error}); retrying shortly")
            raise
        except AccessctlError as error:
            # The person gets the reason; nothing else happened (each use case changes nothing before it fails).
            logger.info("slack work refused", extra={"kind": work.kind, "reason": str(error)})
            if response_url:
                self._tell(response_url, f":no_entry: {error}")
            return {"refused": str(error)}

    # -------------------------------------------------------------- /access

    def request_access(
        self, user_id: str, channel_id: str | None, submission: AccessRequestSubmission, response_url: str | None
    ) -> dict[str, Any]:
        settings = self.deps.settings
        assert settings.slack_team_id is not None
        member = self.members.get(user_id)
        requester, entry = requester_from_slack(member, channel_id, settings.slack_team_id, self.directory_loader())
        grantee = caller_for_directory_role(
            entry, self.deps.iam, account_id=self.deps.account_id, opt_in_tag_key=settings.opt_in_tag_key
        )
        answer = submit_request(submission, grantee, self.deps, requester=requester, origin=RequestOrigin.SLACK)
        metrics.add_metric(name="SlackRequests", unit="Count", value=1)
        if response_url:
            self._tell(
                response_url,
                f"Request `{answer.request_id}` for {submission.database} as {submission.db_user} is being decided; "
                "I will message you with the outcome.",
            )
        return {"request_id": answer.request_id}

    # -------------------------------------------------------------- buttons

    def click(self, click: ButtonClick) -> dict[str, Any]:
        identity, entry = self._clicker(click.user_id)
        if click.action == "extend":
            return self._extend(click, identity)
        approver = Approver(
            identity=identity, groups=frozenset(entry.groups), via=f"slack:{click.team_id}/{click.user_id}"
        )
        result = cast_vote(
            click.request_id, approver, "APPROVE" if click.action == "approve" else "DENY", self.deps, self.approvals
        )
        if result.outcome in (VoteOutcome.APPROVED, VoteOutcome.DENIED, VoteOutcome.COUNTED):
            self._tell(click.response_url, f":white_check_mark: {result.message}")
        else:
            self._tell(click.response_url, f":no_entry: {result.message}")
        return {"request_id": click.request_id, "vote": result.outcome.value}

    def _clicker(self, user_id: str) -> tuple[str, DirectoryEntry]:
        settings = self.deps.settings
        assert settings.slack_team_id is not None
        identity = slack_identity(self.members.get(user_id), settings.slack_team_id)
        return identity, self.directory_loader().entry(identity)

    def _extend(self, click: ButtonClick, identity: str) -> dict[str, Any]:
        """The holder asks for more time: a new request for the same access, decided by policy."""
        try:
            held = self.deps.grants.get(click.request_id)
        except NotFoundError:
            raise ForbiddenError("that grant does not exist") from None
        if held.requested_by != identity:
            raise ForbiddenError("only the holder of a grant can extend it")
        if held.status != RequestStatus.ACTIVE:
            raise ForbiddenError(f"that grant is {held.status.value.lower()}; request access again with /access")
        submission = AccessRequestSubmission(
            database=held.database,
            db_user=held.db_user,
            duration_minutes=held.requested_minutes,
            reason=f"extension of {held.request_id}: {held.reason}"[:500],
            idempotency_key=f"slack-extend-{click.request_id}-{click.action_ts}"[:128],
        )
        channel = held.requester.slack.channel_id if held.requester and held.requester.slack else None
        return self.request_access(click.user_id, channel, submission, click.response_url)

    def _tell(self, response_url: str, text: str) -> None:
        try:
            self.slack.respond(response_url, ChatMessage(text=text), ephemeral=True)
        except AccessctlError as error:
            logger.warning("could not answer in Slack", extra={"reason": str(error)})


# ------------------------------------------------------------------ wiring (one per process)


@cache
def slack_api() -> SlackApi:
    return SlackApi.from_settings(default_dependencies().settings)


def approval_channel() -> ApprovalChannel | None:
    """Slack when configured; without it approvals still work through the API (chat-ops bots)."""
    settings = default_dependencies().settings
    if not settings.slack_secret_name:
        return None
    return SlackApprovalChannel(slack_api(), settings.approval_channels)


@cache
def _members() -> SlackUserCache:
    return SlackUserCache(slack_api().user)


def default_chatops() -> ChatOps:
    deps = default_dependencies()
    return ChatOps(
        deps=deps,
        slack=slack_api(),
        directory_loader=lambda: configured_directory(deps.settings.people_directory_parameter),
        members=_members(),
        approvals=approval_channel(),
    )
