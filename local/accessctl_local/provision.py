"""Create a translated CloudFormation template's resources in the emulator, through its AWS APIs.

This is the one place that stands in for CloudFormation. moto's own ``create_stack`` was not used
because its ``AWS::StepFunctions::StateMachine`` lands in a backend the executing Step Functions
API cannot see, it silently accepts resource types it does not implement, and it cannot create
API Gateway/Scheduler resources the way the local API and schedules need them. Here each
supported type has a provisioner that calls the same public APIs CloudFormation would; an
unsupported type stops the deploy with its name.

Resource types and what they become locally:

=================================  =================================================================
AWS::DynamoDB::Table               DynamoDB table (GSIs/LSIs, streams, SSE, TTL, PITR, tags)
AWS::SNS::Topic                    SNS topic (+ inline subscriptions)
AWS::IAM::ManagedPolicy            customer managed policy, attached to Roles/Users/Groups
AWS::IAM::Role                     role, inline policies, managed policy ARNs
AWS::Lambda::LayerVersion          layer with a placeholder zip; its local dir goes on sys.path
AWS::Lambda::Function              function with a placeholder zip; code runs in-process
AWS::Lambda::Permission            resource policy statement
AWS::StepFunctions::StateMachine   created via the Step Functions API with substitutions resolved
AWS::Scheduler::Schedule           EventBridge Scheduler schedule; also fired by ``schedules.py``
AWS::Events::Rule                  EventBridge rule; scheduled ones also fired by ``schedules.py``
AWS::CloudWatch::Alarm/Dashboard   recorded in moto's CloudWatch (nothing evaluates them locally)
AWS::SQS::Queue                    SQS queue (attributes, redrive policy, encryption, tags)
AWS::Lambda::EventSourceMapping    SQS sources only, not created in moto (whose own mapping would
                                   run the function inside SendMessage): polled by ``queues.py``
AWS::S3::Bucket/BucketPolicy       bucket (Object Lock, versioning, encryption, public access block,
                                   ownership, tags) and its policy, less conditional Deny statements
AWS::ApiGateway::RestApi/Stage/    not created in moto: served by ``api.py`` (ids are generated)
Deployment
=================================  =================================================================
"""

from __future__ import annotations

import io
import json
import re
import secrets
import string
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from .intrinsics import Resolver, references
from .sam import TranslatedTemplate, code_dir_for

DEFAULT_ACCOUNT_ID = "123456789012"
_SUFFIX_ALPHABET = string.ascii_uppercase + string.digits


class DeployError(RuntimeError):
    pass


@dataclass
class DeployedResource:
    logical_id: str
    type: str
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)  # resolved
    local_only: bool = False  # served by this package, not created in the emulator


@dataclass
class ScheduleSpec:
    """A schedule found in the template, to be fired locally."""

    logical_id: str
    expression: str
    target_arn: str
    input: Any = None
    enabled: bool = True
    source: str = "scheduler"  # "scheduler" (EventBridge Scheduler) or "events" (EventBridge rule)
    arn: str = ""


@dataclass
class QueueSourceSpec:
    """An SQS event source mapping found in the template, to be polled locally."""

    logical_id: str
    queue_arn: str
    function: str  # the function's name (or ARN), as the mapping's FunctionName gives it
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass
class Deployment:
    stack_name: str
    region: str
    account_id: str
    parameters: dict[str, Any]
    resources: dict[str, DeployedResource]
    outputs: dict[str, Any]
    layer_dirs: list[Path]
    functions: dict[str, dict[str, Any]]  # logical id -> {name, arn, code_dir, handler, env, timeout, memory}
    schedules: list[ScheduleSpec]
    queue_sources: list[QueueSourceSpec] = field(default_factory=list)

    def physical_ids(self) -> dict[str, str]:
        return {lid: r.physical_id for lid, r in self.resources.items()}


def resolve_parameters(template: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Parameter values as ``Ref`` sees them: defaults, overrides, type conversion and validation."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(template.get("Parameters", {}))
    if unknown:
        raise DeployError(f"unknown parameter overrides: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise DeployError(f"parameter {name} has no default and no override")
        ptype = spec.get("Type", "String")
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            value: Any = raw if isinstance(raw, list) else [p.strip() for p in str(raw).split(",")]
        else:
            value = str(raw)
        _validate_parameter(name, spec, value)
        values[name] = value
    return values


def _validate_parameter(name: str, spec: dict[str, Any], value: Any) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        allowed = spec.get("AllowedValues")
        if allowed is not None and item not in [str(a) for a in allowed]:
            raise DeployError(f"parameter {name}={item!r} not in AllowedValues {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, item):
            raise DeployError(f"parameter {name}={item!r} does not match {pattern}")
        if spec.get("Type") == "Number":
            number = float(item)
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise DeployError(f"parameter {name}={item} below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise DeployError(f"parameter {name}={item} above MaxValue {spec['MaxValue']}")


class Provisioner:
    """Walks the template in dependency order and creates each resource."""

    def __init__(
        self,
        translated: TranslatedTemplate,
        session: boto3.Session,
        endpoint_url: str,
        stack_name: str,
        parameter_overrides: dict[str, Any] | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        skip_missing_aws_managed_policies: bool = False,
    ) -> None:
        self.translated = translated
        self.template = translated.cloudformation
        self.session = session
        self.endpoint_url = endpoint_url
        self.stack_name = stack_name
        self.region = session.region_name or "us-east-1"
        self.account_id = account_id
        self.skip_missing_aws_managed_policies = skip_missing_aws_managed_policies
        self.parameters = resolve_parameters(self.template, parameter_overrides)
        self.deployed: dict[str, DeployedResource] = {}
        self.layer_dirs: list[Path] = []
        self.functions: dict[str, dict[str, Any]] = {}
        self.schedules: list[ScheduleSpec] = []
        self.queue_sources: list[QueueSourceSpec] = []
        self._clients: dict[str, Any] = {}
        self.resolver = Resolver(
            parameters=self.parameters,
            pseudo={
                "AWS::Region": self.region,
                "AWS::AccountId": account_id,
                "AWS::StackName": stack_name,
                "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{account_id}:stack/{stack_name}/{uuid.uuid4()}",
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NotificationARNs": [],
            },
            ref=self._ref,
            get_att=self._get_att,
            conditions=self.template.get("Conditions", {}),
            mappings=self.template.get("Mappings", {}),
        )

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url)
        return self._clients[service]

    # -------------------------------------------------------------- deploy

    def deploy(self) -> Deployment:
        resources: dict[str, Any] = self.template.get("Resources", {})
        for logical_id in self._order(resources):
            resource = resources[logical_id]
            condition = resource.get("Condition")
            if condition is not None and not self.resolver.condition(condition):
                continue
            rtype = resource["Type"]
            provision = _PROVISIONERS.get(rtype)
            if provision is None:
                raise DeployError(
                    f"{logical_id}: resource type {rtype} is not supported locally (add a provisioner in provision.py)"
                )
            props = self.resolver.resolve(resource.get("Properties", {}))
            try:
                self.deployed[logical_id] = provision(self, logical_id, props)
            except DeployError:
                raise
            except Exception as exc:
                raise DeployError(f"{logical_id} ({rtype}): {exc}") from exc
        outputs = {
            name: self.resolver.resolve(output["Value"])
            for name, output in self.template.get("Outputs", {}).items()
            if output.get("Condition") is None or self.resolver.condition(output["Condition"])
        }
        return Deployment(
            stack_name=self.stack_name,
            region=self.region,
            account_id=self.account_id,
            parameters=self.parameters,
            resources=self.deployed,
            outputs=outputs,
            layer_dirs=self.layer_dirs,
            functions=self.functions,
            schedules=self.schedules,
            queue_sources=self.queue_sources,
        )

    def _order(self, resources: dict[str, Any]) -> list[str]:
        deps: dict[str, set[str]] = {}
        for logical_id, resource in resources.items():
            refs = set(references(resource.get("Properties", {})))
            depends_on = resource.get("DependsOn", [])
            refs |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
            deps[logical_id] = {r for r in refs if r in resources and r != logical_id}
        ordered: list[str] = []
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                raise DeployError(f"circular dependency: {' -> '.join([*path, node])}")
            state[node] = 1
            for dep in sorted(deps[node]):
                visit(dep, [*path, node])
            state[node] = 2
            ordered.append(node)

        for node in resources:
            visit(node, [])
        return ordered

    # -------------------------------------------------------------- lookups for the resolver

    def _resource(self, logical_id: str) -> DeployedResource:
        if logical_id not in self.deployed:
            raise DeployError(f"reference to {logical_id}, which is not (yet) deployed")
        return self.deployed[logical_id]

    def _ref(self, logical_id: str) -> Any:
        return self._resource(logical_id).physical_id

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self._resource(logical_id)
        if attribute not in resource.attributes:
            raise DeployError(f"{logical_id} ({resource.type}) has no attribute {attribute} locally")
        return resource.attributes[attribute]

    # -------------------------------------------------------------- helpers

    def physical_name(self, logical_id: str, max_length: int = 64) -> str:
        """A CloudFormation-style generated name: ``stack-LogicalId-SUFFIX``."""
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(12))
        room = max_length - len(suffix) - 2
        prefix = f"{self.stack_name}-{logical_id}"[:room]
        return f"{prefix}-{suffix}"

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account_id}:{resource}"


def _tags_list(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags or []]


def _policy_json(document: dict[str, Any]) -> str:
    """IAM accepts a policy document without ``Version`` (SAM's policy templates omit it); moto does not."""
    return json.dumps({"Version": "2012-10-17", **document} if "Version" not in document else document)


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "accessctl local stack: code runs in-process from the source tree.\n")
    return buffer.getvalue()


def _pick(props: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: props[n] for n in names if n in props}


# ---------------------------------------------------------------- provisioners


def _dynamodb_table(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    ddb = p.client("dynamodb")
    name = props.get("TableName") or p.physical_name(logical_id, 255)
    table = ddb.create_table(**_create_table_args(name, props))["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return DeployedResource(logical_id, "AWS::DynamoDB::Table", name, attributes, props)


def _create_table_args(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments from AWS::DynamoDB::Table properties (mostly the same shapes)."""
    args: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PROVISIONED",
        **_pick(
            props,
            "AttributeDefinitions",
            "KeySchema",
            "BillingMode",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "ProvisionedThroughput",
        ),
    }
    if args["BillingMode"] == "PROVISIONED":
        args.setdefault("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    if "StreamSpecification" in props:
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        args["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled")), **_pick(sse, "SSEType", "KMSMasterKeyId")}
    if props.get("Tags"):
        args["Tags"] = _tags_list(props["Tags"])
    if "DeletionProtectionEnabled" in props:
        args["DeletionProtectionEnabled"] = bool(props["DeletionProtectionEnabled"])
    return args


def _sns_topic(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    sns = p.client("sns")
    name = props.get("TopicName") or p.physical_name(logical_id, 256)
    attributes = {k: str(props[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in props}
    if props.get("FifoTopic"):
        attributes["FifoTopic"] = "true"
        if not name.endswith(".fifo"):
            name += ".fifo"
    args: dict[str, Any] = {"Name": name, "Attributes": attributes}
    if props.get("Tags"):
        args["Tags"] = _tags_list(props["Tags"])
    arn = sns.create_topic(**args)["TopicArn"]
    for sub in props.get("Subscription", []):
        sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
    return DeployedResource(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name}, props)


def _iam_managed_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    iam = p.client("iam")
    name = props.get("ManagedPolicyName") or p.physical_name(logical_id, 128)
    args: dict[str, Any] = {"PolicyName": name, "PolicyDocument": _policy_json(props["PolicyDocument"])}
    args.update(_pick(props, "Path", "Description"))
    arn = iam.create_policy(**args)["Policy"]["Arn"]
    for role in props.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for user in props.get("Users", []):
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
    for group in props.get("Groups", []):
        iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    return DeployedResource(logical_id, "AWS::IAM::ManagedPolicy", arn, {"PolicyArn": arn}, props)


def _iam_role(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    iam = p.client("iam")
    name = props.get("RoleName") or p.physical_name(logical_id, 64)
    args: dict[str, Any] = {
        "RoleName": name,
        "AssumeRolePolicyDocument": _policy_json(props["AssumeRolePolicyDocument"]),
    }
    args.update(_pick(props, "Path", "Description", "MaxSessionDuration", "PermissionsBoundary"))
    if props.get("Tags"):
        args["Tags"] = _tags_list(props["Tags"])
    role = iam.create_role(**args)["Role"]
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=_policy_json(policy["PolicyDocument"])
        )
    for arn in props.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        except iam.exceptions.NoSuchEntityException:
            if not (p.skip_missing_aws_managed_policies and arn.startswith("arn:aws:iam::aws:policy/")):
                raise
    return DeployedResource(logical_id, "AWS::IAM::Role", name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}, props)


def _lambda_layer(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    lam = p.client("lambda")
    name = props.get("LayerName") or logical_id
    args: dict[str, Any] = {"LayerName": name, "Content": {"ZipFile": _placeholder_zip()}}
    args.update(_pick(props, "Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"))
    arn = lam.publish_layer_version(**args)["LayerVersionArn"]
    local = code_dir_for(p.translated, props.get("Content"))
    if local is not None:
        # A SAM-built Python layer is unpacked under /opt/python; the source dir is the package root.
        p.layer_dirs.extend([d for d in (local / "python", local) if d.is_dir()])
    return DeployedResource(logical_id, "AWS::Lambda::LayerVersion", arn, {"LayerVersionArn": arn}, props)


def _lambda_function(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    lam = p.client("lambda")
    name = props.get("FunctionName") or p.physical_name(logical_id, 64)
    env = {k: _env_str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
    args: dict[str, Any] = {
        "FunctionName": name,
        "Role": props["Role"],
        "Code": {"ZipFile": _placeholder_zip()},
        "Runtime": props.get("Runtime", "python3.13"),
        "Handler": props.get("Handler", "app.lambda_handler"),
        "Environment": {"Variables": env},
        "Timeout": int(props.get("Timeout", 3)),
        "MemorySize": int(props.get("MemorySize", 128)),
    }
    args.update(
        _pick(props, "Description", "Layers", "Architectures", "TracingConfig", "VpcConfig", "EphemeralStorage")
    )
    if props.get("Tags"):
        args["Tags"] = {t["Key"]: str(t["Value"]) for t in _tags_list(props["Tags"])}
    function = lam.create_function(**args)
    if "ReservedConcurrentExecutions" in props:
        lam.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=int(props["ReservedConcurrentExecutions"])
        )
    p.functions[logical_id] = {
        "name": name,
        "arn": function["FunctionArn"],
        "code_dir": code_dir_for(p.translated, props.get("Code")),
        "handler": args["Handler"],
        "environment": env,
        "timeout": args["Timeout"],
        "memory": args["MemorySize"],
    }
    return DeployedResource(logical_id, "AWS::Lambda::Function", name, {"Arn": function["FunctionArn"]}, props)


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _lambda_permission(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    args: dict[str, Any] = {"FunctionName": props["FunctionName"], "StatementId": logical_id}
    args.update(_pick(props, "Action", "Principal", "SourceArn", "SourceAccount", "EventSourceToken"))
    p.client("lambda").add_permission(**args)
    return DeployedResource(logical_id, "AWS::Lambda::Permission", logical_id, {}, props)


def _state_machine(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    name = props.get("StateMachineName") or p.physical_name(logical_id, 80)
    definition = props.get("DefinitionString")
    if definition is None:
        definition = json.dumps(props["Definition"])
    # DefinitionSubstitutions: "${Key}" -> value, as CloudFormation does before creating the machine.
    for key, value in props.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    args: dict[str, Any] = {
        "name": name,
        "definition": definition,
        "roleArn": props["RoleArn"],
        "type": props.get("StateMachineType", "STANDARD"),
    }
    if "TracingConfiguration" in props:
        args["tracingConfiguration"] = {"enabled": bool(props["TracingConfiguration"].get("Enabled"))}
    if props.get("Tags"):
        args["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags_list(props["Tags"])]
    arn = p.client("stepfunctions").create_state_machine(**args)["stateMachineArn"]
    resolved = {**props, "DefinitionString": definition}
    return DeployedResource(logical_id, "AWS::StepFunctions::StateMachine", arn, {"Arn": arn, "Name": name}, resolved)


def _scheduler_schedule(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    name = props.get("Name") or p.physical_name(logical_id, 64)
    args: dict[str, Any] = {
        "Name": name,
        "ScheduleExpression": props["ScheduleExpression"],
        "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
        "Target": props["Target"],
    }
    args.update(_pick(props, "GroupName", "Description", "State", "ScheduleExpressionTimezone", "KmsKeyArn"))
    arn = p.client("scheduler").create_schedule(**args)["ScheduleArn"]
    p.schedules.append(
        ScheduleSpec(
            logical_id=logical_id,
            expression=props["ScheduleExpression"],
            target_arn=props["Target"]["Arn"],
            input=props["Target"].get("Input"),
            enabled=props.get("State", "ENABLED") == "ENABLED",
            source="scheduler",
            arn=arn,
        )
    )
    return DeployedResource(logical_id, "AWS::Scheduler::Schedule", name, {"Arn": arn}, props)


def _events_rule(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    events = p.client("events")
    name = props.get("Name") or p.physical_name(logical_id, 64)
    args: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        args["EventPattern"] = json.dumps(props["EventPattern"])
    args.update(_pick(props, "ScheduleExpression", "Description", "EventBusName", "RoleArn"))
    arn = events.put_rule(**args)["RuleArn"]
    targets = props.get("Targets", [])
    if targets:
        events.put_targets(Rule=name, Targets=targets, **_pick(props, "EventBusName"))
    if "ScheduleExpression" in props:
        for target in targets:
            p.schedules.append(
                ScheduleSpec(
                    logical_id=logical_id,
                    expression=props["ScheduleExpression"],
                    target_arn=target["Arn"],
                    input=target.get("Input"),
                    enabled=args["State"] == "ENABLED",
                    source="events",
                    arn=arn,
                )
            )
    return DeployedResource(logical_id, "AWS::Events::Rule", name, {"Arn": arn}, props)


def _sqs_queue(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    """A queue with the template's attributes; ``Ref`` is its URL, as in CloudFormation."""
    sqs = p.client("sqs")
    fifo = str(props.get("FifoQueue", "false")).lower() == "true"
    name = props.get("QueueName") or p.physical_name(logical_id, 80 - (5 if fifo else 0)) + (".fifo" if fifo else "")
    attributes: dict[str, str] = {}
    for key, value in props.items():
        if key in ("QueueName", "Tags"):
            continue
        if isinstance(value, dict):
            attributes[key] = json.dumps(value)
        elif isinstance(value, bool):
            attributes[key] = "true" if value else "false"
        else:
            attributes[key] = str(value)
    args: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        args["tags"] = {t["Key"]: str(t["Value"]) for t in _tags_list(props["Tags"])}
    url = sqs.create_queue(**args)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return DeployedResource(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}, props)


def _event_source_mapping(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    """An SQS source is polled by ``queues.py`` with Lambda's batch semantics; other sources are not served."""
    source = str(props.get("EventSourceArn", ""))
    if not source.startswith("arn:aws:sqs:"):
        raise DeployError(f"{logical_id}: only SQS event sources run locally, not {source or 'this one'}")
    p.queue_sources.append(
        QueueSourceSpec(
            logical_id=logical_id,
            queue_arn=source,
            function=str(props["FunctionName"]),
            batch_size=int(props.get("BatchSize", 10)),
            report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            enabled=str(props.get("Enabled", "true")).lower() == "true",
        )
    )
    mapping_id = str(uuid.uuid4())
    return DeployedResource(logical_id, "AWS::Lambda::EventSourceMapping", mapping_id, {"Id": mapping_id}, props, True)


def _rest_api(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    api_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    root = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    return DeployedResource(logical_id, "AWS::ApiGateway::RestApi", api_id, {"RootResourceId": root}, props, True)


def _api_stage(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    return DeployedResource(logical_id, "AWS::ApiGateway::Stage", props["StageName"], {}, props, True)


def _api_deployment(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    deployment_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))
    return DeployedResource(logical_id, "AWS::ApiGateway::Deployment", deployment_id, {}, props, True)


_ALARM_FIELDS = (
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions",
    "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
    "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData", "Metrics",
)  # fmt: skip


def _cloudwatch_alarm(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    args = _pick(props, *_ALARM_FIELDS)
    args.setdefault("AlarmName", p.physical_name(logical_id, 255))
    for number in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if number in args:
            args[number] = int(args[number])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    cloudwatch = p.client("cloudwatch")
    cloudwatch.put_metric_alarm(**args)
    arn = cloudwatch.describe_alarms(AlarmNames=[args["AlarmName"]])["MetricAlarms"][0]["AlarmArn"]
    return DeployedResource(logical_id, "AWS::CloudWatch::Alarm", args["AlarmName"], {"Arn": arn}, props)


def _s3_bucket(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    """A bucket with the template's Object Lock, versioning, encryption, public access block and ownership."""
    s3 = p.client("s3")
    name = props.get("BucketName") or p.physical_name(logical_id, 63).lower()
    args: dict[str, Any] = {"Bucket": name}
    if p.region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": p.region}
    if props.get("ObjectLockEnabled"):
        args["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**args)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    lock = props.get("ObjectLockConfiguration")
    if lock and lock.get("Rule"):
        retention = {
            key: int(value) if key in ("Days", "Years") else value
            for key, value in lock["Rule"]["DefaultRetention"].items()
        }
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": retention}},
        )
    if "BucketEncryption" in props:
        # CloudFormation names the API's ApplyServerSideEncryptionByDefault ServerSideEncryptionByDefault.
        rules = [
            {
                ("ApplyServerSideEncryptionByDefault" if key == "ServerSideEncryptionByDefault" else key): value
                for key, value in rule.items()
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        block = {key: bool(value) for key, value in props["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if props.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags_list(props["Tags"])})
    attributes = {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
    return DeployedResource(logical_id, "AWS::S3::Bucket", name, attributes, props)


def _s3_bucket_policy(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    """moto's S3 applies a bucket policy's Deny without evaluating its Condition, so a conditional
    Deny (TLS only: ``aws:SecureTransport`` false) would refuse every call to the plain-HTTP
    emulator. Those statements are kept in the resource's properties, not put on the bucket."""
    document = props["PolicyDocument"]
    enforceable = [s for s in document.get("Statement", []) if not (s.get("Effect") == "Deny" and s.get("Condition"))]
    if enforceable:
        p.client("s3").put_bucket_policy(
            Bucket=props["Bucket"], Policy=_policy_json({**document, "Statement": enforceable})
        )
    return DeployedResource(logical_id, "AWS::S3::BucketPolicy", props["Bucket"], {}, props)


def _cloudwatch_dashboard(p: Provisioner, logical_id: str, props: dict[str, Any]) -> DeployedResource:
    name = props.get("DashboardName") or p.physical_name(logical_id, 255)
    p.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props["DashboardBody"])
    return DeployedResource(logical_id, "AWS::CloudWatch::Dashboard", name, {}, props)


_PROVISIONERS: dict[str, Callable[[Provisioner, str, dict[str, Any]], DeployedResource]] = {
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::IAM::ManagedPolicy": _iam_managed_policy,
    "AWS::IAM::Role": _iam_role,
    "AWS::Lambda::LayerVersion": _lambda_layer,
    "AWS::Lambda::Function": _lambda_function,
    "AWS::Lambda::Permission": _lambda_permission,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Scheduler::Schedule": _scheduler_schedule,
    "AWS::Events::Rule": _events_rule,
    "AWS::ApiGateway::RestApi": _rest_api,
    "AWS::ApiGateway::Stage": _api_stage,
    "AWS::ApiGateway::Deployment": _api_deployment,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
    "AWS::CloudWatch::Dashboard": _cloudwatch_dashboard,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::S3::BucketPolicy": _s3_bucket_policy,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::Lambda::EventSourceMapping": _event_source_mapping,
}

SUPPORTED_RESOURCE_TYPES = frozenset(_PROVISIONERS)
