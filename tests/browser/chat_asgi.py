"""console.asgi with static files served, for daphne in the chat browser test (like runserver does)."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from console.asgi import application as console_application

application = ASGIStaticFilesHandler(console_application)
