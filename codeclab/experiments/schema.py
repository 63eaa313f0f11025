"""The experiment spec's JSON Schema: the document's typed shape, its checks with messages for people, its defaults.

Error messages name the JSON path of the fault and say what was expected, because
they reach people through the CLI, the worker and the API's 400 responses.
This module knows one experiment document; expanding a sweep into its points is sweep.py's job.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, NotRequired, TypedDict

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

# Open by nature: a codec's params (each codec has its own, checked against its schema in codec_params),
# and a node of the JSON Schema itself.
CodecParams = dict[str, Any]
SchemaNode = dict[str, Any]


# What a clip's source may say beyond the clip itself; the call form, because one field is named `class`.
# width, height and pix_fmt describe raw .yuv clips.
_ClipFields = TypedDict(
    "_ClipFields",
    {
        "frames": NotRequired[int],
        "crop": NotRequired[list[int]],
        "size": NotRequired[list[int]],
        "fps": NotRequired[float | str],
        "width": NotRequired[int],
        "height": NotRequired[int],
        "pix_fmt": NotRequired[Literal["yuv420p", "yuv420p10le"]],
        "convert_to": NotRequired[Literal["yuv420p"]],
        "sequence": NotRequired[str],
        "class": NotRequired[str],
    },
)


class ClipEntry(_ClipFields):
    """One clip of a test set, as a list or a manifest gives it."""

    clip: str
    start: NotRequired[int]


class SourceSpec(_ClipFields):
    """A spec's source: one clip (what every experiment that runs has), or a test set that sweep.py expands."""

    clip: NotRequired[str]
    test_set: NotRequired[str | list[str | ClipEntry]]
    start: int


class CodecSpec(TypedDict):
    name: str
    params: CodecParams
    trusted: bool
    code: NotRequired[str]
    code_uri: NotRequired[str]
    allow_imports: NotRequired[list[str]]
    uri: NotRequired[str]  # a codec package: a local folder or .tar.gz, or an s3:// .tar.gz


class CodecLimitsSpec(TypedDict, total=False):
    wall_seconds: int
    cpu_seconds: int
    memory_bytes: int


class LimitsSpec(TypedDict):
    timeout_seconds: int
    stall_seconds: int
    codec: NotRequired[CodecLimitsSpec]


class MetricsSpec(TypedDict):
    vmaf: bool | Literal["auto"]


class ArtifactsSpec(TypedDict):
    """The large files an experiment keeps: each is written and measured either way."""

    reference: bool
    recon: bool


class SpecDocument(TypedDict):
    """One checked spec with every default filled in: what is stored, staged for the worker and reported."""

    name: str
    source: SourceSpec
    codec: CodecSpec
    limits: LimitsSpec
    metrics: MetricsSpec
    artifacts: ArtifactsSpec
    description: NotRequired[str]
    # A grid of lists by parameter name, plus `codecs` and `max_concurrency`: sweep.py reads it.
    sweep: NotRequired[dict[str, Any]]


MAX_MESSAGE_CHARS = 300  # a message quotes the offending value: a megabyte of it helps nobody
# Package data beside this module, so the wheel, the image and the Lambda bundle each carry their own copy.
SCHEMA_FILE = resources.files("codeclab.experiments") / "experiment.schema.json"


@dataclass(frozen=True)
class SpecProblem:
    """One fault in a spec: where it is and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A spec that cannot be run; carries every problem found, in document order."""

    def __init__(self, problems: list[SpecProblem], origin: str = "spec") -> None:
        self.problems = problems
        self.origin = origin
        super().__init__(self._summary())

    def _summary(self) -> str:
        if len(self.problems) == 1:
            return f"invalid {self.origin}: {self.problems[0]}"
        listed = "; ".join(str(p) for p in self.problems)
        return f"invalid {self.origin} ({len(self.problems)} problems): {listed}"


@cache
def load_schema() -> SchemaNode:
    """The spec schema as shipped. It is checked against its metaschema by the tests, not here: that check took
    0.1 s of every process that reads a spec (the CLI, the API's Lambda, every job)."""
    schema: SchemaNode = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def codec_names() -> list[str]:
    return list(load_schema()["$defs"]["codec"]["properties"]["name"]["enum"])


def codec_param_schema(codec: str) -> SchemaNode:
    """The params schema of one codec, with its $refs resolved one level."""
    node = load_schema()["$defs"]["codec_params"][codec]
    props = {name: _merged(prop) for name, prop in node.get("properties", {}).items()}
    return {**node, "properties": props}


def resolve_codec_params(codec: str, params: CodecParams) -> CodecParams:
    """Validate one codec's params on their own and fill in their defaults."""
    if codec not in codec_names():
        problem = SpecProblem("$.codec.name", f"unknown codec {codec!r}; valid: {', '.join(codec_names())}")
        raise SpecError([problem])
    node = codec_param_schema(codec)
    errors = sorted(Draft202012Validator(node).iter_errors(params), key=lambda e: e.json_path)
    if errors:
        raise SpecError([_problem(e, prefix="$.codec.params") for e in errors])
    filled = copy.deepcopy(params)
    _fill(filled, node)
    return filled


def parse_spec_json(data: str | bytes, origin: str = "spec") -> object:
    """A spec's JSON text, parsed; text that is not UTF-8, not JSON or nested absurdly deep is a SpecError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = SpecProblem("$", f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}; "
                                       "save the spec as UTF-8")  # fmt: skip
            raise SpecError([problem], origin) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        problem = SpecProblem(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}")
        raise SpecError([problem], origin) from None
    except RecursionError:
        raise SpecError([_too_deep()], origin) from None


def check_document(value: object, origin: str = "spec") -> SpecDocument:
    """A checked copy of one spec document with every schema default filled in; a sweep's points are not expanded."""
    try:
        errors = sorted(_validator().iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    except RecursionError:
        raise SpecError([_too_deep()], origin) from None
    if errors:
        raise SpecError([_problem(e) for e in errors], origin)
    filled: SpecDocument = copy.deepcopy(value)  # type: ignore[assignment]  # the schema has just vouched for it
    _fill(filled, load_schema())
    for codec in [filled["codec"], *filled.get("sweep", {}).get("codecs", [])]:
        codec["params"] = resolve_codec_params(codec["name"], codec.get("params", {}))
    return filled


def definition_problems(value: object, definition: str, where: str) -> list[SpecProblem]:
    """The problems of a value checked against one of the schema's $defs, said at `where` with the field named."""
    problems = []
    for error in sorted(_definition_validator(definition).iter_errors(value), key=lambda e: e.json_path):
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = _message(error, f"$.{field}")
        problems.append(SpecProblem(where, shortened(f"{field}: {message}" if field else message)))
    return problems


@cache
def _definition_validator(definition: str) -> Draft202012Validator:
    schema = load_schema()
    return Draft202012Validator(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    )


def check_source(value: object, origin: str = "spec") -> SourceSpec:
    """A checked copy of one source with its defaults: a sweep checks each of its clips once this way."""
    source: SourceSpec = _check_part(value, "source", "$.source", origin)
    return source


def check_codec(value: object, origin: str = "spec") -> CodecSpec:
    """A checked copy of one codec entry with its params resolved: a sweep checks each of its settings once."""
    codec: CodecSpec = _check_part(value, "codec", "$.codec", origin)
    codec["params"] = resolve_codec_params(codec["name"], codec.get("params", {}))
    return codec


def _check_part(value: object, definition: str, path: str, origin: str) -> Any:
    """A checked, default-filled copy of one of the schema's $defs, its problems named at `path`."""
    errors = sorted(_definition_validator(definition).iter_errors(value), key=lambda e: e.json_path)
    if errors:
        raise SpecError([_problem(e, prefix=path) for e in errors], origin)
    filled = copy.deepcopy(value)
    _fill(filled, load_schema()["$defs"][definition])
    return filled


def _problem(error: ValidationError, prefix: str = "$") -> SpecProblem:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    path = shortened(prefix + "".join(parts))
    return SpecProblem(path, shortened(_message(error, path)))


def shortened(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Text for a message, cut to about `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text) - limit + 40} more characters)"


def _too_deep() -> SpecProblem:
    return SpecProblem("$", "nested too deeply to be an experiment spec (over about 1,000 levels of JSON)")


def _message(error: ValidationError, path: str) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        noun = "parameter" if path.endswith(".params") else "field"
        return f"unknown {noun} {', '.join(map(repr, extra))}; valid: {', '.join(known)}"
    if kind == "enum":
        choices = ", ".join(json.dumps(c) for c in error.validator_value)
        return f"{json.dumps(error.instance)} is not a valid choice; valid: {choices}"
    if kind == "not" and "required" in error.validator_value:
        return f"give at most one of {', '.join(error.validator_value['required'])}"
    if kind == "not" and _required_names(error.validator_value.get("anyOf", [])):
        present = [n for n in _required_names(error.validator_value["anyOf"]) if n in error.instance]
        return f"{', '.join(present)} not allowed here ({schema.get('description', 'see the schema')})"
    if kind == "oneOf" and _required_names(error.validator_value):
        return f"give exactly one of {', '.join(_required_names(error.validator_value))}"
    if kind == "multipleOf" and error.validator_value == 2:
        return f"{error.instance} is odd; yuv420p needs even sizes and offsets"
    if kind == "dependentRequired":
        present = [key for key in error.validator_value if key in error.instance]
        return f"{', '.join(present)} needs {', '.join(error.validator_value[present[0]])} beside it"
    if kind == "required":
        return error.message
    if kind in {"pattern", "oneOf", "anyOf"} and "description" in schema:
        return f"{json.dumps(error.instance)} is not valid; expected {schema['description']}"
    return error.message


def _required_names(alternatives: list[Any]) -> list[str]:
    """["code", "code_uri"] for [{"required": ["code"]}, {"required": ["code_uri"]}]; [] for other shapes."""
    if not all(isinstance(a, dict) and set(a) == {"required"} for a in alternatives):
        return []
    return [name for a in alternatives for name in a["required"]]


def _resolve(node: SchemaNode) -> SchemaNode:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = load_schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target)


def _merged(node: SchemaNode) -> SchemaNode:
    """A property's schema with its $ref target merged under its own keywords."""
    return {**_resolve(node), **{k: v for k, v in node.items() if k != "$ref"}}


def _fill(instance: Any, node: SchemaNode) -> None:
    node = _resolve(node)
    if not isinstance(instance, dict):
        return
    skipped: set[str] = set()
    group = node.get("x-rate-control", [])
    if any(key in instance for key in group):
        skipped.update(group)  # an explicit qp must not gain a default crf beside it
    for key, prop in node.get("properties", {}).items():
        merged = _merged(prop)
        if key not in instance and "default" in merged and key not in skipped:
            instance[key] = copy.deepcopy(merged["default"])
        if key in instance:
            _fill(instance[key], merged)
