from execution.selectors import JobNotFound
from execution.services.analysis_execution_service import (
    AnalysisExecutionService,
    CancelNotAllowed,
)
from execution.services.job_execution_service import (
    JobAlreadyEnded,
    JobExecutionService,
    OutcomeNotRecorded,
)
from execution.services.plugin_execution_service import PluginExecutionService

__all__ = [
    "AnalysisExecutionService",
    "CancelNotAllowed",
    "JobAlreadyEnded",
    "JobExecutionService",
    "JobNotFound",
    "OutcomeNotRecorded",
    "PluginExecutionService",
]
