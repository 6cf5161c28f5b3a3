"""template.yaml, read the way CloudFormation and SAM deploy it, for the local engine.

The engine runs each function with what the template gives it (memory, timeout, /tmp, environment,
reserved concurrency, the S3 grants of its role) so that nothing is repeated here and a change to
the template changes the local runs too. Intrinsic functions are evaluated with the template's
parameter defaults, overridden by the engine's values (the bucket, the prefix, anything a test
sets), the way CloudFormation evaluates them at deploy time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "recommender"
DEFAULT_EPHEMERAL_STORAGE_MB = 512  # Lambda's default /tmp
_NO_VALUE = object()


class TemplateError(RuntimeError):
    """The template holds something the local engine cannot evaluate."""


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that reads CloudFormation's short-form tags (!Ref, !Sub, ...) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):  # !GetAtt Resource.Attribute
        value = value.split(".", 1)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)
    return loaded


@dataclass(frozen=True)
class Function:
    """One AWS::Serverless::Function, with every property the engine applies evaluated."""

    logical_id: str  # "PredictFunction"
    name: str  # "recommender-predict", the name the engine deploys it under
    substitution: str  # the ASL's ${...} naming its ARN, e.g. "PredictFunctionArn"
    code_dir: Path
    handler: str  # "app.lambda_handler"
    memory_mb: int
    timeout_seconds: int
    ephemeral_storage_mb: int
    environment: dict[str, str]
    reserved_concurrency: int | None
    statements: list[dict[str, Any]] = field(default_factory=list)  # its role's IAM statements
    # Its layers' logical ids: Globals' followed by its own, as SAM merges the two lists.
    layers: tuple[str, ...] = ()

    @property
    def handler_file(self) -> Path:
        return self.code_dir / f"{self.handler.rsplit('.', 1)[0]}.py"


class Evaluator:
    """Evaluates intrinsic functions against parameter values and the names the engine gives."""

    def __init__(self, template: dict[str, Any], names: dict[str, str]) -> None:
        defaults = {
            name: str(spec["Default"])
            for name, spec in template.get("Parameters", {}).items()
            if "Default" in spec
        }
        self.names = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            **defaults,
            **names,
        }
        self.conditions: dict[str, Any] = template.get("Conditions", {})

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            intrinsic = self._INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(self, argument)
        evaluated = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in evaluated.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        return _NO_VALUE if name == "AWS::NoValue" else self._name(name)

    def _sub(self, text: str) -> str:
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: self._name(m.group(1)), text)

    def _if(self, argument: list[Any]) -> Any:
        return self.value(argument[1] if self.condition(argument[0]) else argument[2])

    def _equals(self, argument: list[Any]) -> bool:
        left, right = (str(self.value(v)) for v in argument)
        return left == right

    def _join(self, argument: list[Any]) -> str:
        separator, parts = argument
        return str(separator).join(str(p) for p in self.value(parts))

    #: the intrinsic functions template.yaml uses, each given its argument
    _INTRINSICS: ClassVar[dict[str, Callable[[Evaluator, Any], Any]]] = {
        "Ref": _ref,
        "Fn::GetAtt": lambda self, argument: self._name(".".join(argument)),
        "Fn::Sub": _sub,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": lambda self, argument: not self.value(argument[0]),
        "Fn::And": lambda self, argument: all(self.value(v) for v in argument),
        "Fn::Or": lambda self, argument: any(self.value(v) for v in argument),
        "Condition": lambda self, argument: self.condition(argument),
        "Fn::Join": _join,
    }

    def _name(self, name: str) -> str:
        if name not in self.names:
            raise TemplateError(f"the local engine has no value for {name!r} in template.yaml")
        return self.names[name]


def _layers(globals_: dict[str, Any], properties: dict[str, Any]) -> tuple[str, ...]:
    """A function's layers, each a !Ref to a layer of the template: Globals' list, then its own.
    SAM merges a list property of Globals with a function's by appending the function's."""
    found = []
    for layer in [*globals_.get("Layers", []), *properties.get("Layers", [])]:
        if not (isinstance(layer, dict) and set(layer) == {"Ref"}):
            raise TemplateError(f"the local engine runs only the template's own layers, not {layer!r}")
        found.append(layer["Ref"])
    return tuple(found)


def _statements(template: dict[str, Any], properties: dict[str, Any], evaluate: Evaluator) -> list[Any]:
    """The IAM statements of a function's role: SAM's Policies, or those of the role it names."""
    if "Role" in properties:
        role = template["Resources"][properties["Role"]["Fn::GetAtt"][0]]
        documents = [policy["PolicyDocument"] for policy in role["Properties"].get("Policies", [])]
    else:
        documents = [p for p in properties.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
    found: list[Any] = []
    for document in documents:
        found.extend(evaluate.value(document["Statement"]))
    return found


PLACEHOLDERS = {
    "RecommendationsBucket": "recommender-local",
    "RecommendationsBucket.Arn": "arn:aws:s3:::recommender-local",
    "DatabaseSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:recommender/database-AbC123",
}


def functions(
    root: Path, names: dict[str, str] | None = None, prefix: str = "recommender-"
) -> dict[str, Function]:
    """Every function of the template, by its deployed name. `names` gives the values of refs the
    template cannot know (the bucket's name and ARN, the secret's ARN, parameter overrides);
    placeholders stand in for those not given."""
    names = {**PLACEHOLDERS, **(names or {})}
    template = load(root / "template.yaml")
    evaluate = Evaluator(template, names)
    globals_ = template.get("Globals", {}).get("Function", {})
    machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine")
    substitution_of = {
        value["Fn::GetAtt"][0]: key
        for key, value in machine["Properties"]["DefinitionSubstitutions"].items()
        if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn"
    }
    found: dict[str, Function] = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = {**globals_, **resource["Properties"]}
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        reserved = evaluate.value(properties.get("ReservedConcurrentExecutions", {"Ref": "AWS::NoValue"}))
        name = prefix + logical.removesuffix("Function").lower()
        found[name] = Function(
            logical_id=logical,
            name=name,
            substitution=substitution_of[logical],
            code_dir=root / properties["CodeUri"],
            handler=properties["Handler"],
            memory_mb=int(evaluate.value(properties.get("MemorySize", 128))),
            timeout_seconds=int(evaluate.value(properties.get("Timeout", 3))),
            ephemeral_storage_mb=int(
                evaluate.value(
                    properties.get("EphemeralStorage", {}).get("Size", DEFAULT_EPHEMERAL_STORAGE_MB)
                )
            ),
            environment={key: str(evaluate.value(value)) for key, value in variables.items()},
            reserved_concurrency=None if reserved is _NO_VALUE else int(reserved),
            statements=_statements(template, resource["Properties"], evaluate),
            layers=_layers(globals_, resource["Properties"]),
        )
    return found
