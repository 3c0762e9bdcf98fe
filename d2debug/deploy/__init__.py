"""The deployed model: export a detectron2 model to TorchScript/ONNX with its input contract, run the artifact
the way deployment code does, and split its gap to the reference into what the export changed and what the
deployment's preprocessing changed."""
from .artifact import DeployedModel, artifact_format, load_deployed, read_contract
from .code import deployment_code, deployment_lines
from .contract import CONTRACT_FILE, Contract, cfg_with_contract, contract_from_json, read_contract_file
from .export import ExportReport, contract_for, export_model
from .runner import (
    DeployedComparison,
    check_deployment_spec,
    check_same_model,
    compare_deployed,
    contract_differences,
    run_deployed,
)

__all__ = ["DeployedModel", "artifact_format", "load_deployed", "read_contract", "deployment_code", "deployment_lines",
           "CONTRACT_FILE", "Contract", "cfg_with_contract", "contract_from_json", "read_contract_file",
           "ExportReport", "contract_for", "export_model", "DeployedComparison", "check_deployment_spec",
           "check_same_model", "compare_deployed", "contract_differences", "run_deployed"]
