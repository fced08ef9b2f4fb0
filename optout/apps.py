from django.apps import AppConfig


class OptoutConfig(AppConfig):
    name = "optout"
    verbose_name = "Datasets and blocklist"

    def ready(self) -> None:
        from optout import checks  # noqa: F401  (registers the system checks)
