"""Pipeline Doctor: work out which preprocessing stage(s) of a user's own inference code differ from the
reference, from what that code feeds the model.

One module per step, each with its thresholds as named constants:

- :mod:`.inputs`: read a saved model input safely, unpack the container, the findings it shows by itself;
- :mod:`.fit`: least-squares fits of the user's tensor against a rendering;
- :mod:`.geometry`: orientation, size rule, the original size passed;
- :mod:`.resample`: which resize kernel made the pixels;
- :mod:`.register`: transposition, padding of any border mode, crops anywhere;
- :mod:`.source`: an alpha composite, a JPEG re-encoding, a decoder's reduced decode;
- :mod:`.values`: channel order, value range, normalization;
- :mod:`.residual`: what no stage explains (``unexplained``): a value curve, a blur or sharpening, a colour change;
- :mod:`.damage`: what fixing each finding recovers, measured with the model (and on the user's own function);
- :mod:`.normcheck`: which PIXEL_MEAN/STD the weights were trained with;
- :mod:`.fingerprint`: the reference recorded at training time, and checks against it;
- :mod:`.statscheck`: a tensor against a fingerprint without the image;
- :mod:`.diagnose`: the steps in order, and the :class:`Diagnosis`.

Its accuracy suites, which drive it from outside, are :mod:`d2debug.evaluation`.

Finding ids and texts are :mod:`d2debug.findings`.
"""
from ..findings import FINDING_IDS, Finding
from ..run import preprocess
from .diagnose import Diagnosis, diagnose
from .fingerprint import (
    FINGERPRINT_VERSION,
    cfg_from_fingerprint,
    check_config,
    check_statistics,
    load_fingerprint,
    make_fingerprint,
    save_fingerprint,
)
from .inputs import UserInput, call_preprocess, container_findings, load_user_input, make_user_input, parse_user_input
from .normcheck import norm_check
from .resample import RESAMPLERS
from .statscheck import StatisticsCheck, check_input_statistics

__all__ = [
    "FINDING_IDS",
    "FINGERPRINT_VERSION",
    "Finding",
    "UserInput",
    "Diagnosis",
    "StatisticsCheck",
    "RESAMPLERS",
    "load_user_input",
    "call_preprocess",
    "parse_user_input",
    "preprocess",
    "make_user_input",
    "diagnose",
    "check_input_statistics",
    "container_findings",
    "norm_check",
    "make_fingerprint",
    "save_fingerprint",
    "load_fingerprint",
    "cfg_from_fingerprint",
    "check_config",
    "check_statistics",
]
