from rest_framework.routers import SimpleRouter

from plugins.api import PluginViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("plugins", PluginViewSet, basename="plugin")

urlpatterns = router.urls
