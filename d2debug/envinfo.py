"""What this machine runs: Python, torch, detectron2 (and whether its compiled ops load), CUDA, devices."""
from __future__ import annotations

import platform
import sys

__all__ = ["environment"]


def environment() -> dict:
    """A JSON-ready description of the runtime. ``detectron2_ops`` is True when ``detectron2._C`` imports."""
    import torch

    info: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "devices": ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError as exc:
        info["torchvision"] = f"not importable ({exc})"
    try:
        import detectron2

        info["detectron2"] = detectron2.__version__
        info["detectron2_path"] = detectron2.__file__.rsplit("/", 2)[0]
        from .compat import compiled_ops

        info["detectron2_ops"] = compiled_ops()
    except ImportError as exc:
        info["detectron2"] = f"not importable ({exc})"
        info["detectron2_ops"] = False
    info["reference_device"] = "cuda:0" if info["cuda_available"] else "cpu"
    return info
