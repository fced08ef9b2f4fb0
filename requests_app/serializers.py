from rest_framework import serializers

from optout.models import Dataset
from requests_app import aftercare, monitoring
from requests_app.models import ItemState, RemovalState


class SignalsInput(serializers.Serializer):
    phash = serializers.CharField(help_text="pHash, 16 hex digits (imagehash's string form).")
    pdq = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="PDQ hash, 64 hex digits; null when its quality is below 50 (it is discarded then).",
    )
    pdq_quality = serializers.IntegerField(required=False, default=0, min_value=0, max_value=100)
    sha256 = serializers.CharField(help_text="sha256 of the image file's bytes, 64 hex digits.")
    variant_set = serializers.IntegerField(
        required=False, help_text="The variant set the variants were computed with (optout.imaging.VARIANT_SET)."
    )
    variants = serializers.DictField(
        child=serializers.DictField(),
        required=False,
        help_text="Optional: the signals of every variant of the set (mirrored, turned, cropped), by name, "
        "each {phash, pdq, pdq_quality}, as static/js/signals.js computes them.",
    )


class CreateRemovalInput(serializers.Serializer):
    urls = serializers.ListField(
        child=serializers.CharField(max_length=100_000),
        help_text="Image URLs: repeated fields, or one field with one URL per line.",
    )
    images = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="Reference images (multipart). Hashed, never stored."
    )
    signals = SignalsInput(many=True, required=False, help_text="Signals computed by the client instead of images.")
    dataset = serializers.SlugRelatedField(
        slug_field="name", queryset=Dataset.objects.all(), required=False, allow_null=True
    )
    email = serializers.EmailField(
        required=False, allow_blank=True, help_text="Optional; deleted when the case closes."
    )
    monitor_months = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=monitoring.MAX_MONTHS,
        help_text="Keep watching new datasets for copies this many months (0: no). Keeps the signals that long.",
    )
    monitor_email = serializers.EmailField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional; told when a copy is found; deleted when monitoring ends.",
    )


class CreateRemovalOutput(serializers.Serializer):
    case = serializers.CharField()
    secret = serializers.CharField(help_text="Shown once. Keep it: it is the only way to follow the case.")
    state = serializers.ChoiceField(choices=RemovalState.choices)


class CaseInput(serializers.Serializer):
    case = serializers.CharField(max_length=40)
    secret = serializers.CharField(max_length=100)


class ItemStatusOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=ItemState.choices)


class RemovalStatusOutput(serializers.Serializer):
    case = serializers.CharField()
    state = serializers.ChoiceField(choices=RemovalState.choices)
    items = ItemStatusOutput(many=True)
    found_later = serializers.IntegerField(help_text="Copies found later by monitoring, waiting for a reviewer.")
    monitor_until = serializers.DateTimeField(allow_null=True, help_text="Until when new datasets are watched.")
    appeal_until = serializers.DateTimeField(allow_null=True, help_text="Until when a rejection can be appealed.")


class AddLinksInput(CaseInput):
    urls = serializers.ListField(child=serializers.CharField(max_length=100_000), help_text="More image URLs.")
    images = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="Reference images again, if the case kept none."
    )
    signals = SignalsInput(many=True, required=False, help_text="Or their signals, computed by the client.")


class AppealInput(CaseInput):
    note = serializers.CharField(max_length=aftercare.APPEAL_NOTE_MAX_LENGTH, help_text="Why, in a few words.")


class MonitorInput(CaseInput):
    months = serializers.IntegerField(min_value=1, max_value=monitoring.MAX_MONTHS, default=monitoring.DEFAULT_MONTHS)
