from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "hie.exchange"
    label = "exchange"
    verbose_name = "Document exchange"
