"""The console's URLs with the Django admin switched on (CONSOLE_DJANGO_ADMIN=True), for tests."""

from django.contrib import admin
from django.urls import path

from console.urls import urlpatterns as console_urlpatterns

urlpatterns = [path("django-admin/", admin.site.urls), *console_urlpatterns]
