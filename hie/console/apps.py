from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "hie.console"
    label = "console"
    verbose_name = "Staff console"
