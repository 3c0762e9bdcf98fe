"""Run under torchrun by tests/test_shard.py: each rank audits into a folder only it uses, as on machines
without shared storage; rank 0 prints the merged summary and the records it merged as JSON."""
import json
import os
import sys
from pathlib import Path

from d2debug.audit import load_dataset, run_audit, start_ranks
from d2debug.model import load_demo_model

ranks = start_ranks("cpu")
audit = run_audit(load_demo_model(device="cpu"), load_dataset(sys.argv[2], limit=int(sys.argv[3])),
                  Path(sys.argv[1]) / f"disk{ranks.rank}", ranks=ranks, write_report=False)
if ranks.is_main:
    print(json.dumps({"summary": audit.summary, "records": audit.records}))
sys.stdout.flush()
os._exit(0)  # see d2debug/cli/audit.py: no process-group teardown
