import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Import every view (and the imaging stack behind the intake) while the worker boots, not during
# the first request it serves: that request would otherwise wait seconds (bench/load saw it in p99).
import_module(settings.ROOT_URLCONF)
