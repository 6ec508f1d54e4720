"""Deploy failures that must be loud (each starts and stops its own stack)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from accessctl_local import DeployError, LocalStack


def test_an_unsupported_resource_type_stops_the_deploy(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  Stream:\n    Type: AWS::Kinesis::Stream\n    Properties: {}\n"
    )
    with pytest.raises(DeployError, match="AWS::Kinesis::Stream"):
        LocalStack.start(tmp_path, run_schedules=False, load_aws_managed_policies=False)


def test_a_mapping_of_another_source_than_sqs_stops_the_deploy(tmp_path: Path) -> None:
    template = """
    Resources:
      Mapping:
        Type: AWS::Lambda::EventSourceMapping
        Properties:
          EventSourceArn: arn:aws:kinesis:us-east-1:123456789012:stream/s
          FunctionName: f
    """
    (tmp_path / "template.yaml").write_text(textwrap.dedent(template).lstrip())
    with pytest.raises(DeployError, match="only SQS event sources"):
        LocalStack.start(tmp_path, run_schedules=False, load_aws_managed_policies=False)


def test_a_second_stack_in_the_same_process_is_refused(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    with (
        LocalStack.start(tmp_path, run_schedules=False, load_aws_managed_policies=False),
        pytest.raises(RuntimeError, match="another LocalStack"),
    ):
        LocalStack.start(tmp_path, run_schedules=False)
