from django.contrib import admin

from appliance.accounts.models import Department
from appliance.core.admin_site import PlatformAdminReadOnly


@admin.register(Department)
class DepartmentAdmin(PlatformAdminReadOnly):
    list_display = ("code", "name", "parent")
