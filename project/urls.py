from django.contrib import admin
from django.urls import include, path

from plugins.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("plugins.urls")),
    path("metrics", metrics_view, name="metrics"),
]
