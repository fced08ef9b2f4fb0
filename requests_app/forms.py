from django import forms
from django.core.exceptions import ValidationError

from config import parsers
from optout.models import Dataset
from requests_app import aftercare, intake, monitoring


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field (the pattern Django's documentation gives)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,image/gif"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleImageField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


MONITOR_CHOICES = [(months, f"{months} months") for months in (3, 6, 12, 18, monitoring.MAX_MONTHS)]


class LinksAndPictures:
    """Cleaning shared by the forms that take links and, optionally, the picture again."""

    def clean_urls(self):
        return intake.clean_urls([self.cleaned_data["urls"]])

    def clean_images(self):
        return intake.hash_uploads(self.cleaned_data.get("images") or [])


class RemovalRequestForm(LinksAndPictures, forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(),
        required=False,
        empty_label="All datasets (I am not sure)",
        label="Dataset",
        help_text="Where you found the picture, if you know.",
    )
    urls = forms.CharField(
        label="Links to the picture",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        help_text=f"The web address (URL) of the picture as the dataset lists it. One per line, at most {intake.MAX_URLS}.",
        error_messages={"required": "Give at least one link (URL) to the picture."},
    )
    images = MultipleImageField(
        label="Your copy of the picture",
        required=False,
        help_text=(
            f"JPEG, PNG, WebP or GIF, at most {intake.MAX_IMAGES} files. "
            "Only short fingerprints (hashes) of it are used to compare with the picture at the link; "
            "the picture itself is never stored."
        ),
    )
    # Filled by the page's script when the picture is hashed on the device instead.
    signals = forms.CharField(required=False, widget=forms.HiddenInput)
    contact_email = forms.EmailField(
        label="E-mail address",
        required=False,
        help_text="Only if you want news of the case. It is deleted when the case closes.",
    )
    monitor = forms.BooleanField(
        label="Keep watching new datasets for copies of this picture.",
        required=False,
        help_text=(
            "Only then do we keep the picture's fingerprints after the case ends, until the watching stops "
            "or you withdraw the request. New copies go to a reviewer like the first ones."
        ),
    )
    monitor_months = forms.TypedChoiceField(
        label="For how long",
        choices=MONITOR_CHOICES,
        coerce=int,
        initial=monitoring.DEFAULT_MONTHS,
        required=False,
        empty_value=monitoring.DEFAULT_MONTHS,
    )
    monitor_email = forms.BooleanField(
        label="E-mail me when a new copy is found (the address above is then kept until the watching stops).",
        required=False,
    )
    confirm = forms.BooleanField(
        label="I confirm that this picture shows me, or someone I am allowed to act for, and that I want it removed.",
        error_messages={"required": "Please confirm the statement to send the request."},
    )

    def monitoring(self) -> tuple[int, str]:
        """(months to watch, e-mail to tell): (0, "") when the requester did not ask for it."""
        if not self.cleaned_data.get("monitor"):
            return 0, ""
        email = self.cleaned_data.get("contact_email", "") if self.cleaned_data.get("monitor_email") else ""
        return self.cleaned_data["monitor_months"], email

    def clean_signals(self):
        raw = self.cleaned_data.get("signals") or ""
        if not raw:
            return []
        try:
            items = parsers.loads(raw)
        except ValueError:
            raise ValidationError("The fingerprints computed by this page could not be read.") from None
        if not isinstance(items, list):
            raise ValidationError("The fingerprints computed by this page could not be read.")
        return intake.parse_client_signals(items)

    def clean(self):
        cleaned = super().clean()
        if "images" in cleaned and "signals" in cleaned and not cleaned["images"] and not cleaned["signals"]:
            self.add_error("images", "Choose your copy of the picture, so that we can compare it with the link.")
        return cleaned

    def references(self):
        return self.cleaned_data["images"] + self.cleaned_data["signals"]


class CaseForm(forms.Form):
    case = forms.CharField(
        label="Case reference",
        max_length=40,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    secret = forms.CharField(
        label="Secret",
        max_length=100,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )


class CaseActionForm(forms.Form):
    """A form on the status page: the case and secret ride along in hidden fields (the page is no-store)."""

    case = forms.CharField(max_length=40, widget=forms.HiddenInput)
    secret = forms.CharField(max_length=100, widget=forms.HiddenInput)
    id_prefix = ""  # several of these forms share the page: their ids must not clash

    def __init__(self, *args, **kwargs):
        if self.id_prefix:
            kwargs.setdefault("auto_id", f"id_{self.id_prefix}_%s")
        super().__init__(*args, **kwargs)


class WithdrawForm(CaseActionForm):
    confirm = forms.BooleanField(
        label="Yes, withdraw this request.",
        error_messages={"required": "Tick the box to confirm that you want to withdraw the request."},
    )


class AddLinksForm(LinksAndPictures, CaseActionForm):
    id_prefix = "links"
    urls = forms.CharField(
        label="More links to the picture",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off"}),
        help_text=f"Other places the picture appears in a dataset. One per line, at most {intake.MAX_URLS}.",
        error_messages={"required": "Give at least one link (URL) to the picture."},
    )
    images = MultipleImageField(
        label="Your copy of the picture, again",
        required=False,
        help_text="Needed only if your case no longer keeps its fingerprints (it ended without watching).",
    )


class AppealForm(CaseActionForm):
    id_prefix = "appeal"
    note = forms.CharField(
        label="Why should a reviewer look again?",
        max_length=aftercare.APPEAL_NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A few words are enough. Another reviewer decides, and that decision is final.",
        error_messages={"required": "Say in a few words why the decision should be looked at again."},
    )


class MonitorForm(CaseActionForm):
    id_prefix = "monitor"
    months = forms.TypedChoiceField(
        label="Keep watching for", choices=MONITOR_CHOICES, coerce=int, initial=monitoring.DEFAULT_MONTHS
    )
