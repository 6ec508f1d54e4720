"""Trusted signal providers: facts about a request that policies may rely on.

Each provider returns a :class:`~accessctl.signals.model.Signal` that records where the value
came from (provenance), or why it is unknown. Policies treat an unknown signal as "condition not
met" (fail closed); the decision names the missing signal.
"""

from accessctl.signals.model import DEVICE_SIGNAL_KEYS, SIGNAL_NAMES, RequestSignals, Signal

__all__ = ["DEVICE_SIGNAL_KEYS", "SIGNAL_NAMES", "RequestSignals", "Signal"]
