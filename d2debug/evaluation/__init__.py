"""How well the Pipeline Doctor (:mod:`d2debug.doctor`) names a user's mistakes, measured from outside it, as
detectron2 keeps ``evaluation/`` apart from ``modeling/``:

- :mod:`.suite`: generated user pipelines with known mistakes (rendered with the library's stage functions), the
  runners of the written suites, the damage of each mistake measured alone (``measure_alone``), and the
  confusion table of true finding ids vs the Doctor's top finding (``python -m d2debug doctor-suite``);
- :mod:`.handwritten`: pipelines written the way real inference scripts are (torchvision, OpenCV, YOLO
  letterboxing, PIL), tied to the shipped demo model, using nothing from d2debug but :mod:`.scripts`, the
  helpers its scripts share (``--handwritten``);
- :mod:`.wild`: pipelines from the wild, the same way: crops anywhere, padding in every border mode, decoders
  that scale or skip EXIF, size rules from training or other libraries, tensor layouts and dtypes, transforms
  the vocabulary has no id for, code from public detectron2 issues, correct pipelines written other ways; each
  multi-mistake case carries its mistakes alone, the order measured with the model (``--wild``).

Import the modules themselves (``from d2debug.evaluation.suite import run_suite``): the package re-exports nothing,
so each name has one home.
"""
