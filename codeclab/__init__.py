"""codeclab: neural video codec experiments with honest rate-distortion figures."""

__version__ = "0.1.0"
