"""accessctl's local stack: the SAM template and ASL running offline, with no Docker.

    from accessctl_local import LocalStack

    with LocalStack.start("/path/to/project") as stack:
        stack.api_url, stack.endpoint_url, stack.outputs, stack.resources
        stack.session(), stack.client("dynamodb")
        stack.fire_schedule("SweepGrantsFunctionSweep")
        stack.inject_failure("IssueGrantFunction", TransientError("boom"), times=2)
        stack.api_call_counts()

Command line: ``python -m accessctl_local serve [--api-port 3000] [--emulator-port 5000]``.
"""

from .provision import DeployError
from .runtime import Invocation, LambdaContext
from .sigv4 import SignatureError, sign
from .stack import LocalStack

__all__ = ["DeployError", "Invocation", "LambdaContext", "LocalStack", "SignatureError", "sign"]
