from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_fetch_loopback(app_configs, **kwargs):
    if settings.OPTOUT_FETCH_ALLOW_LOOPBACK:
        return [
            Warning(
                "OPTOUT_FETCH_ALLOW_LOOPBACK is on: the fetcher will connect to 127.0.0.0/8 and ::1.",
                hint="Loopback fetches are for the demo and the tests only. Unset it in production.",
                id="optout.W001",
            )
        ]
    return []
