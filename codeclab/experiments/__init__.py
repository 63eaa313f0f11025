"""The experiment contract: spec schema, defaults and validation.

Kept free of heavy imports (no numpy, no torch) so Lambdas can carry it.
"""

from codeclab.experiments.spec import (
    SpecError,
    SpecProblem,
    codec_names,
    codec_param_schema,
    load_spec_file,
    resolve_codec_params,
    validate_spec,
)

__all__ = [
    "SpecError",
    "SpecProblem",
    "codec_names",
    "codec_param_schema",
    "load_spec_file",
    "resolve_codec_params",
    "validate_spec",
]
