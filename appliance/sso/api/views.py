from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import acting_user
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.sso import services
from appliance.sso.api.serializers import MappingRuleSerializer, MappingRuleUpdateSerializer
from appliance.sso.models import MappingRule


class MappingRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Sign-in rules (LDAP group or OIDC claim → department and role): platform admins manage, auditors read."""

    queryset = MappingRule.objects.select_related("department")
    serializer_class = MappingRuleSerializer
    filter_map = {"source": "source"}

    def create(self, request: Request) -> Response:
        ser = MappingRuleSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        rule = services.create_rule(acting_user(request), **ser.validated_data)
        return Response(MappingRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MappingRuleUpdateSerializer, responses=MappingRuleSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = MappingRuleUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        rule = services.update_rule(acting_user(request), int(pk), **ser.validated_data)
        return Response(MappingRuleSerializer(rule).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.delete_rule(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
