"""How well the Pipeline Doctor (:mod:`d2debug.doctor`) names a user's mistakes, measured from outside it, as
detectron2 keeps ``evaluation/`` apart from ``modeling/``:

- :mod:`.suite`: generated user pipelines with known mistakes (rendered with the library's stage functions), the
  hand-written suite's runner, and the confusion table of true finding ids vs the Doctor's top finding
  (``python -m d2debug doctor-suite``);
- :mod:`.handwritten`: pipelines written the way real inference scripts are (torchvision, OpenCV, YOLO
  letterboxing, PIL), tied to the shipped demo model, using nothing from d2debug.

Import the modules themselves (``from d2debug.evaluation.suite import run_suite``): the package re-exports nothing,
so each name has one home.
"""
