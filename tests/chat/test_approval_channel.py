"""Asking approvers in Slack, and showing everyone how it was decided."""

from __future__ import annotations

import pytest

from accessctl.chat.blocks import APPROVE_ACTION, ChatMessage
from accessctl.chat.slack import SlackApi
from accessctl.errors import ApprovalChannelError, ChatError
from accessctl.models import ApprovalStatus, MessageRef
from accessctl.notify import SlackApprovalChannel
from accessctl_local import FakeSlack
from tests.chat.conftest import pending_approval, slack_request

CHANNELS = {"db-owners": "C0DBOWNERS", "dba": "C0DBA0001"}


def test_given_an_approver_group_with_a_channel_when_asking_then_the_request_is_posted_there(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    refs = SlackApprovalChannel(slack_api, CHANNELS).ask(slack_request(), pending_approval())

    [posted] = fake_slack.messages_in("C0DBOWNERS")
    assert refs == [MessageRef(channel="C0DBOWNERS", ts=posted["ts"])]
    assert "approval needed (0 of 1)" in posted["text"]
    assert any(
        element.get("action_id") == APPROVE_ACTION
        for block in posted["blocks"]
        for element in block.get("elements", [])
    )
    assert fake_slack.messages_in("C0DBA0001") == []


def test_given_an_approver_group_without_a_channel_when_asking_then_a_clear_error_and_nothing_posted(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    with pytest.raises(ApprovalChannelError, match="no Slack channel for approver group 'security'"):
        SlackApprovalChannel(slack_api, CHANNELS).ask(slack_request(), pending_approval(approver_group="security"))
    assert fake_slack.calls() == []


def test_given_approval_messages_in_two_channels_when_decided_then_both_show_the_outcome_without_buttons(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    channel = SlackApprovalChannel(slack_api, CHANNELS)
    first = channel.ask(slack_request(), pending_approval())
    second = slack_api.post("C0DBA0001", ChatMessage(text="Database access needs approval (a copy for the DBAs)"))
    approval = pending_approval(
        status=ApprovalStatus.APPROVED,
        decided_at="2026-12-03T15:12:00Z",
        decided_by=["bob@example.com"],
        messages=[*first, second],
    )

    channel.show_decision(slack_request(), approval)

    for ref in approval.messages:
        [shown] = [m for m in fake_slack.messages_in(ref.channel) if m["ts"] == ref.ts]
        assert "APPROVED by bob@example.com" in shown["text"]
        assert all(block["type"] != "actions" for block in shown["blocks"])


def test_given_one_approval_message_is_gone_when_decided_then_the_others_are_still_updated_and_the_error_raised(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    channel = SlackApprovalChannel(slack_api, CHANNELS)
    [kept] = channel.ask(slack_request(), pending_approval())
    gone = MessageRef(channel="C0DBA0001", ts="1.000999")
    approval = pending_approval(
        status=ApprovalStatus.DENIED,
        decided_at="2026-12-03T15:11:00Z",
        decided_by=["dave@example.com"],
        messages=[gone, kept],
    )

    with pytest.raises(ChatError, match="message_not_found"):
        channel.show_decision(slack_request(), approval)

    [shown] = fake_slack.messages_in("C0DBOWNERS")
    assert "DENIED by dave@example.com" in shown["text"]
