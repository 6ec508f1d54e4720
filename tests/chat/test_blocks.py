"""The messages people see: what they say, which buttons they carry, and that user text stays text."""

from __future__ import annotations

from typing import Any

import pytest

from accessctl.chat.blocks import (
    APPROVE_ACTION,
    DENY_ACTION,
    EXTEND_ACTION,
    ChatMessage,
    acknowledgement,
    approval_decided,
    approval_request,
    requester_update,
)
from accessctl.models import ApprovalStatus, ApprovalVote, NotifyEvent, RevokeReason
from tests.chat.conftest import REQUEST_ID, REQUESTER_SLACK_ID, granted, pending_approval, slack_request


def texts(message: ChatMessage) -> str:
    """Every text shown by the blocks, joined (what a reader of the message sees)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.blocks)
    return "\n".join(found)


def buttons(message: ChatMessage) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "button"
    ]


def test_given_a_slack_request_when_acknowledged_then_it_names_the_request_and_says_it_is_being_decided() -> None:
    message = acknowledgement(slack_request())

    assert REQUEST_ID in message.text
    assert "orders-prod as app_ro for 30 min received; deciding" in message.text
    assert "investigating INC-1234" in texts(message)


def test_given_a_request_needing_approval_when_approvers_are_asked_then_they_see_what_they_approve() -> None:
    message = approval_request(slack_request(), pending_approval())
    shown = texts(message)

    assert f"alice@example.com (<@{REQUESTER_SLACK_ID}>)" in shown
    for expected in ("`orders-prod`", "`app_ro`", "30 min", "`dba-prod`", "0 of 1", "investigating INC-1234"):
        assert expected in shown
    assert "2026-12-03 16:00 UTC" in shown  # the deadline (fallback of Slack's local-time token)
    assert "decided <!date^" in shown  # the decision time
    assert "alice@example.com asks for access to orders-prod as app_ro for 30 min" in message.text
    assert "2026-12-03 16:00 UTC" in message.text


def test_given_a_request_needing_approval_when_approvers_are_asked_then_the_buttons_carry_only_the_request_id() -> None:
    message = approval_request(slack_request(), pending_approval())

    found = {button["action_id"]: button for button in buttons(message)}
    assert set(found) == {APPROVE_ACTION, DENY_ACTION}
    assert found[APPROVE_ACTION]["style"] == "primary"
    assert found[DENY_ACTION]["style"] == "danger"
    assert all(button["value"] == REQUEST_ID for button in found.values())


def test_given_evaluated_signals_when_approvers_are_asked_then_each_shows_its_value_and_source_or_why_missing() -> None:
    shown = texts(approval_request(slack_request(), pending_approval()))

    assert "• *MFA*: yes (from slack workspace (two-factor enforced))" in shown
    assert "• *Source IP*: 203.0.113.7 (from slack (no client IP))" in shown
    assert "• *Groups*: dba, oncall (from people directory)" in shown
    assert "• *MFA age*: missing: no verified ID token: MFA age unknown" in shown
    assert "• *Device*: missing: no device posture: device unknown" in shown


def test_given_device_posture_and_mfa_age_when_shown_then_they_read_as_words() -> None:
    request = slack_request()
    assert request.decision is not None
    signals = {
        **request.decision.signals,
        "device": {
            "value": {"managed": True, "compliant": False, "os_version": "14.2", "last_check_in_age_seconds": 600},
            "source": "posture webhook",
        },
        "mfa_age_seconds": {"value": 300, "source": "id token auth_time"},
    }
    request = request.model_copy(update={"decision": request.decision.model_copy(update={"signals": signals})})

    shown = texts(approval_request(request, pending_approval()))

    assert "• *Device*: managed, not compliant, OS 14.2, checked in 10 min ago (from posture webhook)" in shown
    assert "• *MFA age*: 5 min ago (from id token auth_time)" in shown


HOSTILE_REASONS = {
    "channel ping": "<!channel> please look",
    "here ping": "<!here|here> now",
    "user mention": "ask <@U0BOSS001> first",
    "link": "see <https://evil.example/phish|the runbook>",
    "ampersand entity": "a &lt; b & c",
}


@pytest.mark.parametrize("reason", HOSTILE_REASONS.values(), ids=HOSTILE_REASONS.keys())
def test_given_a_hostile_reason_when_shown_to_approvers_then_it_is_text_not_markup(reason: str) -> None:
    message = approval_request(slack_request(reason=reason), pending_approval())
    shown = markup(message)

    escaped = reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in shown
    assert "<!channel>" not in shown and "<!here" not in shown and "<https://evil" not in shown
    assert "<@U0BOSS001>" not in shown


def test_given_user_text_when_shown_then_mrkdwn_is_sent_verbatim_so_slack_links_nothing() -> None:
    message = approval_request(slack_request(reason="@channel look"), pending_approval())

    mrkdwn = [node for block in message.blocks for node in _text_objects(block) if node["type"] == "mrkdwn"]
    assert mrkdwn and all(node.get("verbatim") is True for node in mrkdwn)


def markup(message: ChatMessage) -> str:
    """What Slack parses as mrkdwn: the fallback text and every mrkdwn text object
    (plain_text, e.g. the confirmation dialog, is never parsed for mentions or links)."""
    mrkdwn = [node["text"] for node in _text_objects(message.blocks) if node["type"] == "mrkdwn"]
    return "\n".join([message.text, *mrkdwn])


def _text_objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if node.get("type") in ("mrkdwn", "plain_text") else []
        return own + [found for value in node.values() for found in _text_objects(value)]
    if isinstance(node, list):
        return [found for item in node for found in _text_objects(item)]
    return []


def test_given_a_hostile_identity_when_shown_then_it_is_escaped_too() -> None:
    request = slack_request(principal_arn="arn:<!channel>", requester=None)

    message = approval_request(request, pending_approval())

    assert "arn:&lt;!channel&gt;" in markup(message)
    assert "<!channel>" not in markup(message)


def test_given_one_of_two_approvals_when_the_message_is_refreshed_then_it_still_asks_and_names_the_approver() -> None:
    approval = pending_approval(
        approvals_required=2,
        votes=[ApprovalVote(approver="bob@example.com", decision="APPROVE", at="2026-12-03T15:10:00Z", via="slack")],
    )

    message = approval_decided(slack_request(), approval)

    assert "1 of 2: bob@example.com" in texts(message)
    assert {button["action_id"] for button in buttons(message)} == {APPROVE_ACTION, DENY_ACTION}


DECIDED = {
    "approved by two": (
        {
            "status": ApprovalStatus.APPROVED,
            "approvals_required": 2,
            "decided_at": "2026-12-03T15:12:00Z",
            "decided_by": ["bob@example.com", "carol@example.com"],
        },
        "APPROVED by bob@example.com and carol@example.com at 2026-12-03 15:12 UTC",
    ),
    "denied": (
        {"status": ApprovalStatus.DENIED, "decided_at": "2026-12-03T15:11:00Z", "decided_by": ["dave@example.com"]},
        "DENIED by dave@example.com at 2026-12-03 15:11 UTC",
    ),
    "expired": ({"status": ApprovalStatus.EXPIRED}, "EXPIRED at 2026-12-03 16:00 UTC, nobody decided"),
}


@pytest.mark.parametrize(("changes", "outcome"), DECIDED.values(), ids=DECIDED.keys())
def test_given_a_decided_approval_when_the_message_is_updated_then_everyone_sees_the_outcome_and_no_buttons(
    changes: dict[str, Any], outcome: str
) -> None:
    message = approval_decided(slack_request(), pending_approval(**changes))

    assert outcome in message.text
    assert buttons(message) == []
    assert "`orders-prod`" in texts(message)  # the same summary stays


UPDATES: dict[str, tuple[NotifyEvent, str]] = {
    "granted": (
        "GRANTED",
        f"Access granted to orders-prod as app_ro until 2026-12-03 15:35 UTC. Connect with `accessctl token {REQUEST_ID}`.",
    ),
    "extended": ("EXTENDED", "Access to orders-prod as app_ro extended until 2026-12-03 15:35 UTC."),
    "denied": ("DENIED", "Access to orders-prod as app_ro denied: rule dba-prod needs 1 approval from db-owners."),
    "expired": ("EXPIRED", "Request for orders-prod as app_ro expired: the approvals did not come in."),
    "failed": ("FAILED", "Request for orders-prod as app_ro failed: IAM quota reached."),
}


@pytest.mark.parametrize(("event", "expected"), UPDATES.values(), ids=UPDATES.keys())
def test_given_an_event_when_the_requester_is_told_then_the_text_says_what_happened(
    event: NotifyEvent, expected: str
) -> None:
    request = granted(slack_request(failure="IAM quota reached"))

    message = requester_update(event, request)

    assert expected.rstrip(".") in message.text
    assert message.blocks and buttons(message) == []


def test_given_an_approver_denied_when_the_requester_is_told_then_it_names_who_denied() -> None:
    approval = pending_approval(
        status=ApprovalStatus.DENIED, decided_at="2026-12-03T15:11:00Z", decided_by=["dave@example.com"]
    )

    message = requester_update("DENIED", slack_request(), approval)

    assert "denied: denied by dave@example.com at 2026-12-03 15:11 UTC" in message.text


def test_given_a_revoked_grant_when_the_holder_is_told_then_it_says_why_access_ended() -> None:
    request = granted(slack_request(), revoked_at="2026-12-03T15:20:00Z", revoke_reason=RevokeReason.EARLY)

    message = requester_update("REVOKED", request)

    assert message.text == "Access to orders-prod as app_ro has ended: it was revoked early."


def test_given_a_grant_about_to_expire_when_the_holder_is_warned_then_an_extend_button_carries_the_request_id() -> None:
    message = requester_update("EXPIRING", granted(slack_request()))

    assert "expires at 2026-12-03 15:35 UTC" in message.text
    [extend] = buttons(message)
    assert (extend["action_id"], extend["value"], extend["text"]["text"]) == (EXTEND_ACTION, REQUEST_ID, "Extend")
