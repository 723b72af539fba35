"""The schema's pages."""

from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerView


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI. OPTIONS answers 405: DRF's description of an HTML view needs a template."""

    metadata_class = None
