from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Removal requests"

    def ready(self) -> None:
        from requests_app import receivers  # noqa: F401  (connects the signal receivers)
