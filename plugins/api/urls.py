from rest_framework.routers import SimpleRouter

from plugins.api.views import PluginViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # /v1/plugins and /v1/plugins/ both answer, no redirect
router.register("plugins", PluginViewSet, basename="plugin")

urlpatterns = router.urls
