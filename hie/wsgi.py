"""WSGI entry point (gunicorn hie.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")
application = get_wsgi_application()
