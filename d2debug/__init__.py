"""d2debug: see what your Detectron2 inference preprocessing does to your model's detections.

The library (everything but ``d2debug.ui``) never imports Streamlit. Main entry points::

    from d2debug import load_model, reference_spec, run, compare, tensor_stats
    m = load_model("config.yaml", "model_final.pth")
    ref = run(m, "image.jpg", reference_spec(m.cfg))
    var = run(m, "image.jpg", reference_spec(m.cfg).replace(channel_order="swapped"))
    print(compare(ref, var).f1)
"""
from .compare import Agreement, compare, compare_boxes
from .errors import D2DebugError
from .model import LoadedModel, load_demo_model, load_model
from .run import RunResult, reference_spec, run, run_tensor
from .stages import PipelineSpec
from .stats import tensor_stats
from .version import __version__

__all__ = [
    "Agreement",
    "D2DebugError",
    "LoadedModel",
    "PipelineSpec",
    "RunResult",
    "compare",
    "compare_boxes",
    "load_demo_model",
    "load_model",
    "reference_spec",
    "run",
    "run_tensor",
    "tensor_stats",
    "__version__",
]
