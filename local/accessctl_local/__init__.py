"""accessctl's local stack: the SAM template and ASL running offline, with no Docker.

    from accessctl_local import LocalStack

    with LocalStack.start("/path/to/project") as stack:
        stack.api_url, stack.endpoint_url, stack.outputs, stack.resources
        stack.session(), stack.client("dynamodb")
        stack.fire_schedule("SweepGrantsFunctionSweep")
        stack.inject_failure("IssueGrantFunction", TransientError("boom"), times=2)
        stack.api_call_counts()

A fake Slack Web API for tests (``FakeSlack``, in ``slack_fake``)::

    with FakeSlack(token="xoxb-test") as slack:
        slack.add_user("U0001", email="alice@example.com"); slack.api_url; slack.calls("chat.postMessage")

Command line: ``python -m accessctl_local serve [--api-port 3000] [--emulator-port 5000]``.
"""

from .provision import DeployError
from .runtime import Invocation, LambdaContext
from .sigv4 import SignatureError, sign
from .slack_fake import FakeSlack, SlackCall
from .stack import LocalStack

__all__ = [
    "DeployError",
    "FakeSlack",
    "Invocation",
    "LambdaContext",
    "LocalStack",
    "SignatureError",
    "SlackCall",
    "sign",
]
