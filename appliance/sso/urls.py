from django.urls import path

from appliance.sso import oidc

urlpatterns = [
    path("oidc/start/", oidc.sso_start, name="sso-oidc-start"),
    path("oidc/callback/", oidc.sso_callback, name="sso-oidc-callback"),
]
