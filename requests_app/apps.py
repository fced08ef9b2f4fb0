from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    # Not "Removal requests": the model is called that, and the breadcrumb would say it twice.
    verbose_name = "Review"

    def ready(self) -> None:
        from requests_app import receivers  # noqa: F401  (connects the signal receivers)
