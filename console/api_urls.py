from django.urls import path
from rest_framework.routers import DefaultRouter

from appliance.accounts.api.views import ApiKeyViewSet, DepartmentViewSet, UserViewSet
from appliance.audit.api.views import AuditLogViewSet
from appliance.catalog.api.views import CapacityView, CatalogViewSet, ProfileViewSet
from appliance.chat.api.views import ChatModelViewSet, ConversationViewSet
from appliance.deployments.api.views import DeploymentViewSet
from appliance.gpus.api.views import GpuQuotaViewSet, GpuUnitViewSet, GpuViewSet, NodeViewSet
from appliance.images.api.views import EngineImageViewSet, ImageImportViewSet, NodeImageViewSet
from appliance.quotas.api.views import QuotaViewSet, UsageViewSet
from appliance.safety.api.views import AiLabelView, SafetyHitViewSet, WordListViewSet
from appliance.sso.api.views import MappingRuleViewSet

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
router.register("catalog", CatalogViewSet, basename="catalog")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("quotas", QuotaViewSet, basename="quota")
router.register("usage", UsageViewSet, basename="usagerecord")
router.register("deployments", DeploymentViewSet, basename="deployment")
# images/imports/ before images/, so "imports" is never read as an image id.
router.register("images/imports", ImageImportViewSet, basename="imageimport")
router.register("images", NodeImageViewSet, basename="nodeimage")
router.register("engine-images", EngineImageViewSet, basename="engineimage")
router.register("conversations", ConversationViewSet, basename="conversation")
router.register("chat/models", ChatModelViewSet, basename="chatmodel")
router.register("safety/word-lists", WordListViewSet, basename="wordlist")
router.register("safety/hits", SafetyHitViewSet, basename="safetyhit")
router.register("sso/rules", MappingRuleViewSet, basename="signinrule")

urlpatterns = [
    *router.urls,
    path("capacity/", CapacityView.as_view(), name="capacity-api"),
    path("safety/ai-label/", AiLabelView.as_view(), name="ai-label-api"),
]
