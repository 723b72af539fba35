from django.urls import re_path
from rest_framework.routers import SimpleRouter

from execution.api.views import AnalyzeExecutionView, HealthView, JobViewSet

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    # An optional trailing slash, as the routers' routes have ("/?").
    re_path(r"^analyze-execution/?$", AnalyzeExecutionView.as_view(), name="analyze-execution"),
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    *router.urls,
]
