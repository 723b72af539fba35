from django.urls import path
from rest_framework.routers import SimpleRouter

from execution.api.views import AnalyzeExecutionView, HealthView, JobViewSet

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    path("analyze-execution", AnalyzeExecutionView.as_view(), name="analyze-execution"),
    path("health", HealthView.as_view(), name="health"),
    *router.urls,
]
