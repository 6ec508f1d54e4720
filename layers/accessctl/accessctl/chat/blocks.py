"""Block Kit messages for requesters and approvers.

Every function returns a :class:`ChatMessage`: ``text`` is meaningful on its own (it is what a
notification, a screen reader and an old client show), ``blocks`` is the layout.

Everything a person typed or a record holds is escaped for mrkdwn (``&``, ``<``, ``>`` become
entities), so a reason such as ``<!channel>`` is shown, not executed. Sections holding such text
are sent ``verbatim``, so Slack does not turn names, channels or ``@here`` in them into mentions.
Buttons carry the request id and nothing else: whoever clicks is established by the interaction
handler, never by the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from accessctl.models import (
    AccessRequest,
    Approval,
    ApprovalStatus,
    NotifyEvent,
    RevokeReason,
)

APPROVE_ACTION = "approve"
DENY_ACTION = "deny"
EXTEND_ACTION = "extend"

# The order and names the approvers see; a signal not listed here is shown after these, by its key.
SIGNAL_LABELS = {
    "mfa": "MFA",
    "mfa_age_seconds": "MFA age",
    "source_ip": "Source IP",
    "device": "Device",
    "groups": "Groups",
}
MAX_LISTED_GROUPS = 10
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")

REVOKE_REASON_WORDS = {
    RevokeReason.EXPIRED: "it reached its expiry time",
    RevokeReason.EARLY: "it was revoked early",
    RevokeReason.COMPENSATION: "issuing it failed part-way, so it was removed",
    RevokeReason.SWEEP: "it was past its expiry time",
    RevokeReason.TAMPERED: "its policy was changed after it was issued",
}


class ChatMessage(BaseModel):
    """One message: ``text`` for notifications and screen readers, ``blocks`` (Block Kit dicts) for the layout."""

    model_config = ConfigDict(frozen=True)

    text: str
    blocks: list[dict[str, Any]] = Field(default_factory=list)


# ------------------------------------------------------------------ formatting helpers


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: the three characters that start or end control sequences."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _instant(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def plain_time(iso: str | None) -> str:
    """``2026-12-03 16:45 UTC``: for texts that must read the same everywhere (notifications)."""
    instant = _instant(iso)
    if instant is None:
        return escape(iso or "unknown time")
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def slack_time(iso: str | None) -> str:
    """A Slack date token: each reader sees the time in their own time zone (UTC as the fallback)."""
    instant = _instant(iso)
    if instant is None:
        return plain_time(iso)
    return f"<!date^{int(instant.timestamp())}^{{date_short_pretty}} at {{time}}|{plain_time(iso)}>"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _minutes(request: AccessRequest) -> str:
    granted = request.decision.granted_minutes if request.decision else None
    if granted is not None and granted != request.requested_minutes:
        return f"{granted} min (asked for {request.requested_minutes})"
    return f"{request.requested_minutes} min"


def _mention(user_id: str) -> str:
    return f"<@{user_id}>" if _SLACK_USER_ID.fullmatch(user_id) else escape(user_id)


def _requester(request: AccessRequest, *, mention: bool = True) -> str:
    """The person the request is for (escaped), with a Slack mention when it came from Slack."""
    who = escape(request.requested_by)
    requester = request.requester
    if requester is not None and requester.slack is not None and mention:
        who = f"{who} ({_mention(requester.slack.user_id)})"
    if requester is not None and requester.via:
        who = f"{who}, via {escape(requester.via)}"
    return who


def _target(request: AccessRequest) -> str:
    return f"{escape(request.database)} as {escape(request.db_user)}"


def _people(names: Sequence[str]) -> str:
    escaped = [escape(name) for name in names]
    if len(escaped) <= 1:
        return "".join(escaped) or "nobody"
    return ", ".join(escaped[:-1]) + " and " + escaped[-1]


def _signal_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "mfa_age_seconds" and isinstance(value, int):
        return f"{_duration(value)} ago"
    if isinstance(value, list):
        shown = ", ".join(str(item) for item in value[:MAX_LISTED_GROUPS]) or "none"
        more = len(value) - MAX_LISTED_GROUPS
        return f"{shown} (+{more} more)" if more > 0 else shown
    if isinstance(value, dict):
        return _device(value) if name == "device" else ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _device(value: dict[str, Any]) -> str:
    parts = [
        "managed" if value.get("managed") else "not managed",
        "compliant" if value.get("compliant") else "not compliant",
    ]
    if value.get("os_version"):
        parts.append(f"OS {value['os_version']}")
    age = value.get("last_check_in_age_seconds")
    if isinstance(age, int) and not isinstance(age, bool):
        parts.append(f"checked in {_duration(age)} ago")
    return ", ".join(parts)


def signal_lines(signals: dict[str, dict[str, Any]]) -> list[str]:
    """One mrkdwn line per evaluated signal: its value and where it came from, or why it is missing."""
    names = [name for name in SIGNAL_LABELS if name in signals] + sorted(set(signals) - set(SIGNAL_LABELS))
    lines = []
    for name in names:
        signal = signals[name]
        label = SIGNAL_LABELS.get(name, name)
        if signal.get("value") is None:
            detail = f"missing: {escape(_clip(str(signal.get('missing') or 'not provided'), 200))}"
        else:
            detail = escape(_clip(_signal_value(name, signal["value"]), 300))
            if signal.get("source"):
                detail += f" (from {escape(_clip(str(signal['source']), 120))})"
            if signal.get("note"):
                detail += f" — {escape(_clip(str(signal['note']), 200))}"
        lines.append(f"• *{escape(label)}*: {detail}")
    return lines


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_clip(text, SectionBlock.text_max_length), verbatim=True))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_clip(text, 2000), verbatim=True)])


def _message(text: str, blocks: Sequence[Block]) -> ChatMessage:
    # The fallback text is capped like Slack's own limit for a message's top-level text.
    return ChatMessage(text=_clip(text, 3000), blocks=[block.to_dict() for block in blocks])


# ------------------------------------------------------------------ the requester


def acknowledgement(request: AccessRequest) -> ChatMessage:
    """The ephemeral answer to ``/access``: the request was taken and is being decided."""
    text = (
        f"Request {escape(request.request_id)} for {_target(request)} for {request.requested_minutes} min "
        "received; deciding…"
    )
    return _message(
        text,
        [
            _section(
                f"Request for *{_target(request)}* for {request.requested_minutes} min received; deciding…\n"
                f">{escape(request.reason)}"
            ),
            _context(f"Request `{escape(request.request_id)}`. You will get a message with the answer."),
        ],
    )


def requester_update(event: NotifyEvent, request: AccessRequest, approval: Approval | None = None) -> ChatMessage:
    """What the requester (or holder) is told when their request moves on.

    ``approval`` is optional: given, a denial names who denied and an expiry names the deadline.
    """
    target = _target(request)
    context = _context(f"Request `{escape(request.request_id)}`")
    if event == "EXPIRING":
        return _expiring(request, target, context)
    text = _update_text(event, request, approval, target)
    return _message(text, [_section(text), context])


def _update_text(event: NotifyEvent, request: AccessRequest, approval: Approval | None, target: str) -> str:
    until = plain_time(request.grant.expires_at) if request.grant else "its expiry"
    request_id = escape(request.request_id)
    if event == "GRANTED":
        return f"Access granted to {target} until {until}. Connect with `accessctl token {request_id}`."
    if event == "EXTENDED":
        return f"Access to {target} extended until {until}. Connect with `accessctl token {request_id}`."
    if event == "DENIED":
        return f"Access to {target} denied: {_denial(request, approval)}."
    if event == "EXPIRED":
        by = f" by {plain_time(approval.deadline)}" if approval is not None else ""
        return f"Request for {target} expired: the approvals did not come in{by}. Nothing was granted."
    if event == "REVOKED":
        reason = request.grant.revoke_reason if request.grant else None
        why = REVOKE_REASON_WORDS.get(reason, "it was revoked") if reason is not None else "it was revoked"
        return f"Access to {target} has ended: {why}."
    return f"Request for {target} failed: {escape(_clip(request.failure or 'see the audit log', 500))}."


def _denial(request: AccessRequest, approval: Approval | None) -> str:
    if approval is not None and approval.status == ApprovalStatus.DENIED and approval.decided_by:
        return f"denied by {_people(approval.decided_by)} at {plain_time(approval.decided_at)}"
    if request.decision is not None:
        return escape(_clip(request.decision.reason, 1000))
    return "no decision recorded"


def _expiring(request: AccessRequest, target: str, context: ContextBlock) -> ChatMessage:
    expires_at = request.grant.expires_at if request.grant else None
    text = f"Your access to {target} expires at {plain_time(expires_at)}."
    extend = ButtonElement(text="Extend", action_id=EXTEND_ACTION, value=request.request_id)
    return _message(
        f"{text} Use Extend to ask for more time.",
        [
            _section(f"Your access to *{target}* expires at {slack_time(expires_at)}."),
            ActionsBlock(elements=[extend]),
            context,
        ],
    )


# ------------------------------------------------------------------ the approvers


def _approvals_so_far(approval: Approval) -> str:
    approvers = approval.approvers
    so_far = f"{len(approvers)} of {approval.approvals_required}"
    return f"{so_far}: {_people(approvers)}" if approvers else so_far


def _summary_blocks(request: AccessRequest, approval: Approval) -> list[Block]:
    decision = request.decision
    rule = f"`{escape(decision.rule_id)}`" if decision is not None and decision.rule_id else "none"
    fields = [
        f"*Requested by*\n{_requester(request)}",
        f"*Database*\n`{escape(request.database)}`",
        f"*DB user*\n`{escape(request.db_user)}`",
        f"*Duration*\n{_minutes(request)}",
        f"*Rule*\n{rule}",
        f"*Approvals*\n{_approvals_so_far(approval)}",
        f"*Deadline*\n{slack_time(approval.deadline)}",
    ]
    blocks: list[Block] = [
        SectionBlock(fields=[MarkdownTextObject(text=_clip(field, 2000), verbatim=True) for field in fields]),
        _section(f"*Reason*\n>{escape(request.reason)}"),
    ]
    if decision is None:
        blocks.append(_section("*Context evaluated*\nno decision recorded"))
    else:
        lines = signal_lines(decision.signals) or ["no signals recorded"]
        header = f"*Context evaluated* (decided {slack_time(decision.decided_at)})"
        blocks.append(_section("\n".join([header, *lines])))
    return blocks


def _ask_text(request: AccessRequest, approval: Approval) -> str:
    return (
        f"{_requester(request, mention=False)} asks for access to {_target(request)} for {_minutes(request)}: "
        f"approval needed ({_approvals_so_far(approval)}) by {plain_time(approval.deadline)}."
    )


def approval_request(request: AccessRequest, approval: Approval) -> ChatMessage:
    """The message in the approvers' channel: the request, the context it was decided on, and buttons."""
    who = _clip(request.requested_by, 60)
    confirm = ConfirmObject(
        title="Approve access?",
        text=PlainTextObject(
            text=_clip(f"{who} gets {request.database} as {request.db_user} for {_minutes(request)}.", 300)
        ),
        confirm="Approve",
        deny="Cancel",
    )
    buttons = ActionsBlock(
        elements=[
            ButtonElement(
                text="Approve", action_id=APPROVE_ACTION, value=request.request_id, style="primary", confirm=confirm
            ),
            ButtonElement(text="Deny", action_id=DENY_ACTION, value=request.request_id, style="danger"),
        ]
    )
    return _message(
        _ask_text(request, approval),
        [
            HeaderBlock(text="Database access needs approval"),
            *_summary_blocks(request, approval),
            buttons,
            _context(f"Request `{escape(request.request_id)}`"),
        ],
    )


def _outcome(approval: Approval) -> tuple[str, str]:
    """(plain text, mrkdwn) saying how the approval ended."""
    decided_at = approval.decided_at or (approval.votes[-1].at if approval.votes else None)
    if approval.status == ApprovalStatus.APPROVED:
        by = approval.decided_by or approval.approvers
        return (
            f"APPROVED by {_people(by)} at {plain_time(decided_at)}",
            f":white_check_mark: *Approved* by {_people(by)} at {slack_time(decided_at)}",
        )
    if approval.status == ApprovalStatus.DENIED:
        by = approval.decided_by or [vote.approver for vote in approval.votes if vote.decision == "DENY"]
        return (
            f"DENIED by {_people(by)} at {plain_time(decided_at)}",
            f":no_entry: *Denied* by {_people(by)} at {slack_time(decided_at)}",
        )
    nobody = "nobody decided" if not approval.approvers else f"only {_approvals_so_far(approval)} came in"
    return (
        f"EXPIRED at {plain_time(approval.deadline)}, {nobody}",
        f":hourglass: *Expired* at {slack_time(approval.deadline)}; {nobody}",
    )


def approval_decided(request: AccessRequest, approval: Approval) -> ChatMessage:
    """The approval message once decided, for everyone: the same summary, the outcome, no buttons.

    While the approval is still pending (one of several approvals is in), this is the approval
    request again, showing the approvals so far.
    """
    if approval.status == ApprovalStatus.PENDING:
        return approval_request(request, approval)
    plain, rich = _outcome(approval)
    text = f"Access for {_requester(request, mention=False)} to {_target(request)}: {plain}."
    return _message(
        text,
        [
            _section(rich),
            *_summary_blocks(request, approval),
            _context(f"Request `{escape(request.request_id)}`"),
        ],
    )
