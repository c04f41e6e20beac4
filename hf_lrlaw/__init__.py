"""hf-lrlaw: predict a language model's loss curve under any learning-rate schedule."""

from hf_lrlaw.curves import CurveError, LossCurve

__all__ = ["CurveError", "LossCurve"]
__version__ = "0.1.0"
