"""The experiment contract: the spec, the workflow's state, the result and the record, each with one typed shape.

Kept free of heavy imports (no numpy, no torch) so Lambdas can carry it.
"""

from codeclab.experiments.redaction import install_log_redaction
from codeclab.experiments.schema import (
    SpecError,
    SpecProblem,
    codec_names,
    codec_param_schema,
    parse_spec_json,
    resolve_codec_params,
)
from codeclab.experiments.spec import Spec, load_spec_file, read_spec, validate_spec

# Every process that talks to AWS (handlers, worker, CLI, emulator) imports this package before its first
# boto3 client: from then on, no logging setup can put signed-request material in a log (see redaction.py).
install_log_redaction()

__all__ = [
    "Spec",
    "SpecError",
    "SpecProblem",
    "codec_names",
    "codec_param_schema",
    "load_spec_file",
    "parse_spec_json",
    "read_spec",
    "resolve_codec_params",
    "validate_spec",
]
