from django.apps import AppConfig


class LocatorConfig(AppConfig):
    name = "hie.locator"
    label = "locator"
    verbose_name = "Record locator"
