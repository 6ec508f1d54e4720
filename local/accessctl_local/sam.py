"""Turn the project's SAM ``template.yaml`` into plain CloudFormation, offline.

``aws-sam-translator`` only accepts S3 locations for code, so local ``CodeUri``/``ContentUri`` are
swapped for ``s3://accessctl-local/<LogicalId>`` placeholders first (the local paths are kept in
``TranslatedTemplate.code_dirs``), and a local ``DefinitionUri`` is read and inlined as
``Definition``, which the translator then emits as ``DefinitionString`` plus
``DefinitionSubstitutions``, as ``sam deploy`` would.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_BUCKET = "accessctl-local"

# Managed policies a SAM template may name (``Policies: [AWSLambdaExecute]``). The translator only
# asks for this map when a name is used; anything else should be named by ARN in the template.
MANAGED_POLICY_MAP: dict[str, str] = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/",
        "AWSLambdaVPCAccessExecutionRole": "service-role/",
        "AWSLambdaRole": "service-role/",
        "AWSXrayWriteOnlyAccess": "",
        "AWSXRayDaemonWriteAccess": "",
        "AWSLambdaExecute": "",
        "AmazonDynamoDBReadOnlyAccess": "",
        "AmazonDynamoDBFullAccess": "",
        "AmazonSNSFullAccess": "",
        "AmazonRDSReadOnlyAccess": "",
        "IAMReadOnlyAccess": "",
        "CloudWatchLambdaInsightsExecutionRolePolicy": "",
    }.items()
}

_LOCAL_CODE_KEYS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Lambda::LayerVersion": "Content",
}


@dataclass
class TranslatedTemplate:
    """CloudFormation produced from a SAM template, plus what only the local stack needs."""

    cloudformation: dict[str, Any]
    sam: dict[str, Any]
    # S3 key of the placeholder (the SAM logical id) -> local directory with the code.
    code_dirs: dict[str, Path] = field(default_factory=dict)
    template_path: Path | None = None


class TemplateError(ValueError):
    pass


def load_template(path: Path) -> dict[str, Any]:
    """Parse a (SAM or CloudFormation) YAML/JSON template, short-form tags included."""
    return yaml_parse(path.read_text())


def translate(
    template_path: Path, region: str, parameter_overrides: dict[str, Any] | None = None
) -> TranslatedTemplate:
    template_path = template_path.resolve()
    sam = load_template(template_path)
    base = template_path.parent
    fragment = copy.deepcopy(sam)
    code_dirs = _localise_code(fragment, base)
    if "Transform" not in fragment:
        return TranslatedTemplate(cloudformation=fragment, sam=sam, code_dirs=code_dirs, template_path=template_path)
    translator = Translator(MANAGED_POLICY_MAP, Parser(), boto_session=boto3.session.Session(region_name=region))
    cfn = translator.translate(
        fragment,
        parameter_values=dict(parameter_overrides or {}),
        get_managed_policy_map=lambda: MANAGED_POLICY_MAP,
    )
    return TranslatedTemplate(cloudformation=cfn, sam=sam, code_dirs=code_dirs, template_path=template_path)


def _localise_code(fragment: dict[str, Any], base: Path) -> dict[str, Path]:
    code_dirs: dict[str, Path] = {}
    globals_code = fragment.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for logical_id, resource in fragment.get("Resources", {}).items():
        rtype = resource.get("Type")
        props = resource.setdefault("Properties", {})
        key = _LOCAL_CODE_KEYS.get(rtype)
        inherits_code = "CodeUri" not in props and "InlineCode" not in props and globals_code is not None
        if rtype == "AWS::Serverless::Function" and inherits_code:
            props["CodeUri"] = globals_code
        if key and isinstance(props.get(key), str) and not props[key].startswith("s3://"):
            local = (base / props[key]).resolve()
            code_dirs[logical_id] = local
            if rtype == "AWS::Lambda::LayerVersion":
                props[key] = {"S3Bucket": PLACEHOLDER_BUCKET, "S3Key": logical_id}
            else:
                props[key] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
        if rtype == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            definition_path = (base / props.pop("DefinitionUri")).resolve()
            text = definition_path.read_text()
            try:
                props["Definition"] = json.loads(text)
            except json.JSONDecodeError:
                props["Definition"] = yaml.safe_load(text)
    return code_dirs


def code_dir_for(translated: TranslatedTemplate, code: dict[str, Any] | None) -> Path | None:
    """Local directory behind a translated ``Code``/``Content`` property, if it was local."""
    if not code or code.get("S3Bucket") != PLACEHOLDER_BUCKET:
        return None
    return translated.code_dirs.get(str(code.get("S3Key")))
