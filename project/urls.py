from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from api.http import api_not_found
from api.views import SwaggerView
from plugins.api.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("plugins.api.urls")),
    path("v1/", include("execution.api.urls")),
    re_path(r"^v1(/|$)", api_not_found),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler400 = "api.http.bad_request"
handler403 = "api.http.permission_denied"
handler404 = "api.http.not_found"
handler500 = "api.http.server_error"
