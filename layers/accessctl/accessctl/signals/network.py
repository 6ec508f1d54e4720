"""Source address: from API Gateway's verified request context, never from the body or headers."""

from __future__ import annotations

import ipaddress

from accessctl.signals.model import Signal

SOURCE = "api-gateway requestContext.identity.sourceIp"


def source_ip_signal(source_ip: str | None) -> Signal:
    """The caller's address as API Gateway saw it. Absent for calls through VPC endpoints."""
    if not source_ip:
        return Signal.absent("API Gateway reported no source IP (for example a call through a VPC endpoint)")
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return Signal.absent(f"API Gateway reported an unparseable source IP {source_ip!r}")
    return Signal.of(str(address), SOURCE, note=f"your address is {address}")
