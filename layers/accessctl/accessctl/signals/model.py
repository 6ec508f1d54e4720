"""A signal: a value with its provenance, or the reason it is unknown."""

from __future__ import annotations

import ipaddress
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The signals a policy may ask for (context attributes that may be absent). Everything else in
# the Cedar context (requested_minutes, now, local, window) is computed by accessctl itself.
SIGNAL_NAMES = ("source_ip", "mfa", "mfa_age_seconds", "groups", "device")
DEVICE_SIGNAL_KEYS = ("managed", "compliant", "os_version", "last_check_in_age_seconds")

SignalValue = bool | int | str | list[str] | dict[str, Any]


class Signal(BaseModel):
    """Either a value and its source, or ``missing``: why nobody could vouch for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: SignalValue | None = None
    source: str | None = None
    note: str | None = Field(default=None, description="What the value means, in words a requester understands.")
    missing: str | None = None

    @model_validator(mode="after")
    def _value_or_missing(self) -> Self:
        if (self.value is None) == (self.missing is None):
            raise ValueError("a signal has either a value (with its source) or a reason it is missing")
        if self.value is not None and not self.source:
            raise ValueError("a signal's value needs its source")
        return self

    @classmethod
    def of(cls, value: SignalValue, source: str, note: str | None = None) -> Signal:
        return cls(value=value, source=source, note=note)

    @classmethod
    def absent(cls, reason: str) -> Signal:
        return cls(missing=reason)

    @property
    def present(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        """One phrase for an explanation: the note, the value and its source, or why it is unknown."""
        if self.missing is not None:
            return self.missing
        return self.note or f"{self.value!r} (from {self.source})"


def _not_provided(name: str) -> Signal:
    return Signal.absent(f"{name} not provided")


class RequestSignals(BaseModel):
    """The signals of one request. A field left out is unknown, never assumed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_ip: Signal = Field(default_factory=lambda: _not_provided("source IP"))
    mfa: Signal = Field(default_factory=lambda: Signal.absent("no verified ID token: MFA unknown"))
    mfa_age_seconds: Signal = Field(default_factory=lambda: Signal.absent("no verified ID token: MFA age unknown"))
    groups: Signal = Field(default_factory=lambda: Signal.absent("no verified ID token: groups unknown"))
    device: Signal = Field(default_factory=lambda: Signal.absent("no device posture: device unknown"))

    @model_validator(mode="after")
    def _values_have_the_right_shape(self) -> Self:
        # Checked here so a provider bug fails loudly instead of reaching Cedar as a wrong type.
        checks = {
            "source_ip": lambda v: isinstance(v, str) and bool(ipaddress.ip_address(v)),
            "mfa": lambda v: isinstance(v, bool),
            "mfa_age_seconds": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "groups": lambda v: isinstance(v, list) and all(isinstance(g, str) for g in v),
            "device": _is_device_value,
        }
        for name, check in checks.items():
            signal: Signal = getattr(self, name)
            if signal.present and not check(signal.value):
                raise ValueError(f"signal {name} has a value of the wrong shape: {signal.value!r}")
        return self

    def signal(self, name: str) -> Signal:
        if name not in SIGNAL_NAMES:
            raise KeyError(f"unknown signal {name}")
        result: Signal = getattr(self, name)
        return result

    def cedar_context(self) -> dict[str, Any]:
        """The present signals as Cedar context attributes (absent ones are left out)."""
        context: dict[str, Any] = {}
        for name in SIGNAL_NAMES:
            signal = self.signal(name)
            if not signal.present:
                continue
            if name == "source_ip":
                context[name] = {"__extn": {"fn": "ip", "arg": signal.value}}
            else:
                context[name] = signal.value
        return context

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Each signal with its source, for the decision record and the audit log."""
        return {name: self.signal(name).model_dump(exclude_none=True) for name in SIGNAL_NAMES}


def _is_device_value(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != set(DEVICE_SIGNAL_KEYS):
        return False
    return (
        isinstance(value["managed"], bool)
        and isinstance(value["compliant"], bool)
        and isinstance(value["os_version"], str)
        and isinstance(value["last_check_in_age_seconds"], int)
    )
