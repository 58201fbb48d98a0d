from django.urls import path

from appliance.chat.views import chat_page
from frontend import catalog_views, deployment_views, gpu_views, image_views, usage_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("chat/", chat_page, name="chat"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password/", views.password_change, name="password"),
    path("departments/", views.departments, name="departments"),
    path("users/", views.users, name="users"),
    path("users/<int:pk>/toggle-active/", views.user_toggle_active, name="user-toggle-active"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("audit-log/", views.audit_log, name="audit-log"),
    path("nodes/", gpu_views.nodes, name="nodes"),
    path("nodes/<int:pk>/maintenance/", gpu_views.node_maintenance, name="node-maintenance"),
    path("gpus/", gpu_views.gpu_grid, name="gpus"),
    path("gpus/live/", gpu_views.gpu_live, name="gpu-live"),
    path("gpus/assign/", gpu_views.gpu_assign, name="gpu-assign"),
    path("gpus/<int:pk>/", gpu_views.gpu_detail, name="gpu-detail"),
    path("gpu-quotas/", gpu_views.gpu_quotas, name="gpu-quotas"),
    path("profiles/", catalog_views.profiles, name="profiles"),
    path("profiles/<int:pk>/", catalog_views.profile_detail, name="profile-detail"),
    path("profiles/<int:pk>/archive/", catalog_views.profile_archive, name="profile-archive"),
    path("catalog/", catalog_views.catalog, name="catalog"),
    path("catalog/<str:slug>/delete/", catalog_views.catalog_delete, name="catalog-delete"),
    path("capacity/", catalog_views.capacity, name="capacity"),
    path("usage/", usage_views.usage, name="usage"),
    path("deployments/", deployment_views.deployment_list, name="deployments"),
    path("deployments/new/", deployment_views.deployment_create, name="deployment-create"),
    path("deployments/<int:pk>/", deployment_views.deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/on-demand/", deployment_views.deployment_on_demand, name="deployment-on-demand"),
    path("deployments/<int:pk>/<str:verb>/", deployment_views.deployment_action, name="deployment-action"),
    path("images/", image_views.images, name="images"),
    path("images/engines/<str:engine>/", image_views.engine_image, name="engine-image"),
]
