"""Exemptions by tag: ``accessctl:exempt = "until=2027-01-31;reason=vendor migration OPS-123[;rules=a,b]"``.

Both ``until`` and ``reason`` are mandatory. ``until`` is a date (valid through that day, UTC) or
an ISO 8601 instant. An exemption past its date, or one that does not parse, does not apply; the
finding then says why, so the owner can see their exemption was ignored.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from accessctl.remediation.models import Exemption


class InvalidExemption(ValueError):
    pass


def parse_exemption(value: str) -> tuple[Exemption, datetime]:
    """The exemption and the instant it ends; raises :class:`InvalidExemption`."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, field_value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = field_value.strip()
    until_text, reason = fields.get("until", ""), fields.get("reason", "")
    if not until_text:
        raise InvalidExemption("no until= date")
    if len(reason) < 3:
        raise InvalidExemption("no reason=")
    ends = _end_of(until_text)
    rules = [rule.strip() for rule in fields.get("rules", "").split(",") if rule.strip()] or None
    return Exemption(until=until_text, reason=reason, rules=rules), ends


def _end_of(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC) + timedelta(days=1)
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidExemption(f"until={text!r} is not a date") from error
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def exemption_for(
    tags: dict[str, str], tag_key: str, rule_id: str, now: datetime
) -> tuple[Exemption | None, str | None]:
    """(the exemption that applies, or None; a note when a tag was present but does not apply)."""
    raw = tags.get(tag_key)
    if raw is None:
        return None, None
    try:
        exemption, ends = parse_exemption(raw)
    except InvalidExemption as error:
        return None, f"exemption tag ignored: {error}"
    if exemption.rules is not None and rule_id not in exemption.rules:
        return None, None
    if now >= ends:
        return None, f"exemption expired on {exemption.until} (reason was: {exemption.reason})"
    return exemption, None
