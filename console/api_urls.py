from rest_framework.routers import DefaultRouter

from appliance.accounts.api.views import ApiKeyViewSet, DepartmentViewSet, UserViewSet
from appliance.audit.api.views import AuditLogViewSet
from appliance.gpus.api.views import GpuQuotaViewSet, GpuUnitViewSet, GpuViewSet, NodeViewSet
from appliance.quotas.api.views import QuotaViewSet, UsageViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("departments", DepartmentViewSet, basename="department")
router.register("users", UserViewSet, basename="user")
router.register("api-keys", ApiKeyViewSet, basename="apikey")
router.register("audit-log", AuditLogViewSet, basename="auditrecord")
router.register("nodes", NodeViewSet, basename="node")
router.register("gpus", GpuViewSet, basename="gpu")
router.register("gpu-units", GpuUnitViewSet, basename="gpuunit")
router.register("gpu-quotas", GpuQuotaViewSet, basename="gpuquota")
router.register("quotas", QuotaViewSet, basename="quota")
router.register("usage", UsageViewSet, basename="usagerecord")

urlpatterns = router.urls
