from execution.selectors import JobNotFound
from execution.services.analysis_execution_service import AnalysisExecutionService
from execution.services.job_execution_service import JobAlreadyEnded, JobExecutionService
from execution.services.plugin_execution_service import PluginExecutionService

__all__ = [
    "AnalysisExecutionService",
    "JobAlreadyEnded",
    "JobExecutionService",
    "JobNotFound",
    "PluginExecutionService",
]
