"""The committed OpenAPI document is the one the API function serves."""

from __future__ import annotations

import importlib.util
import json

from tests.support.template import PROJECT_ROOT


def test_given_the_api_routes_when_the_document_is_generated_then_it_matches_the_committed_one() -> None:
    spec = importlib.util.spec_from_file_location("gen_openapi", PROJECT_ROOT / "scripts" / "gen_openapi.py")
    assert spec is not None and spec.loader is not None
    gen_openapi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_openapi)

    generated = gen_openapi.generate()

    committed = (PROJECT_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert generated == committed, "docs/openapi.json has drifted: run `make openapi` and commit it"


def test_given_the_document_then_every_route_of_the_api_function_is_described() -> None:
    from tests.support.template import resources

    document = json.loads((PROJECT_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    api_function = resources("AWS::Serverless::Function")["ApiFunction"]
    api_events = [
        event["Properties"] for event in api_function["Properties"]["Events"].values() if event["Type"] == "Api"
    ]

    for route in api_events:
        openapi_path = route["Path"]
        assert route["Method"].lower() in document["paths"][openapi_path], route
