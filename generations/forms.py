"""The studio's and the batches page's forms: they turn what a person typed into
:class:`jobs.JobRequest`s (the domain validates; the form names the field)."""

from __future__ import annotations

import uuid

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy

from accounts import limits
from generations import batches, images, jobs
from generations.models import ALL_ASPECT_RATIOS, Image, ModelSpec


def offered_choices(models, *, blank: str | None = None) -> tuple[list, list]:
    """(aspect ratio, size) choices for a form: what any of ``models`` takes, in the
    usual order and then any an admin added. The model itself validates the pair."""
    ratios = {r for m in models for r in m.aspect_ratios}
    sizes = {s for m in models for s in m.sizes}
    order = {r: i for i, r in enumerate(ALL_ASPECT_RATIOS)}
    ratio_list = sorted(ratios | {"1:1"}, key=lambda r: (order.get(r, len(order)), r))
    size_list = sorted(sizes, key=lambda s: (limits.SIZE_ORDER.get(s, 99), s))
    size_choices = [("", blank)] if blank is not None else []
    return [(r, r) for r in ratio_list], size_choices + [(s, s) for s in size_list]


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else ([data] if data else [])
        return [super(MultipleImageField, self).clean(f, initial) for f in files]


class StudioForm(forms.Form):
    prompt = forms.CharField(
        label=gettext_lazy("Prompt"),
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "placeholder": gettext_lazy(
                    "A watercolor fox reading a newspaper in a rainy café…"
                ),
                "autofocus": True,
            }
        ),
        required=False,
    )
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.none(),
        to_field_name="slug",
        empty_label=None,
        label=gettext_lazy("Model"),
    )
    aspect_ratio = forms.ChoiceField(label=gettext_lazy("Aspect ratio"), initial="1:1")
    image_size = forms.ChoiceField(label=pgettext_lazy("image size", "Size"), required=False)
    count = forms.TypedChoiceField(
        label=pgettext_lazy("how many", "Images"),
        coerce=int,
        initial=1,
        choices=[(n, str(n)) for n in range(1, 5)],
    )
    # Checked against the chosen model by jobs.validate, which names what the model takes.
    thinking_level = forms.CharField(label=gettext_lazy("Thinking"), required=False, max_length=20)
    grounding = forms.BooleanField(label=gettext_lazy("Ground in Google Search"), required=False)
    references = MultipleImageField(label=gettext_lazy("Reference images"), required=False)
    again = forms.BooleanField(required=False, widget=forms.HiddenInput)  # past the duplicate guard
    # "Edit this image": the image being edited, sent again as the first reference.
    parent = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = ModelSpec.objects.available().select_related("replacement")
        ratios, sizes = offered_choices(self.fields["model"].queryset, blank="—")
        self.fields["aspect_ratio"].choices, self.fields["image_size"].choices = ratios, sizes
        self.user = user
        self.parent_image = self._find_parent()

    def _find_parent(self) -> Image | None:
        """The image named by ``parent`` (a submit) or ``edit`` (the studio link), if this
        person may see it: their own or one a teammate shared (a remix)."""
        pk = self.data.get("parent") if self.is_bound else self.initial.get("edit")
        if not pk or self.user is None:
            return None
        try:
            pk = uuid.UUID(str(pk))
        except ValueError:
            return None
        return (
            Image.objects.visible_to(self.user)
            .select_related("generation")
            .filter(generation_id=pk)
            .first()
        )

    def clean_parent(self):
        if self.cleaned_data.get("parent") and self.parent_image is None:
            raise forms.ValidationError(
                _("The image you were editing is no longer available; remove it and try again.")
            )
        return self.parent_image

    def _parent_reference(self) -> list:
        image = self.parent_image
        if image is None:
            return []
        try:
            with image.file.open("rb") as f:
                # The first name is the reference's file name, stored with it: not translated.
                clean = images.clean_image(f.read(), name=_("The edited image"))
                return [("edited image", clean)]
        except (FileNotFoundError, images.ImageRejected) as exc:
            self.add_error("parent", getattr(exc, "message", _("The edited image is missing.")))
            return []

    def clean_references(self):
        files = self.cleaned_data.get("references") or []
        models = list(self.fields["model"].queryset)
        model = next((m for m in models if m.slug == self.data.get("model")), None)
        if model and len(files) > model.max_reference_images:  # refused before reading any
            raise forms.ValidationError(jobs.too_many_references(model, len(files)))
        most = max((m.max_reference_images for m in models), default=0)
        if len(files) > most:
            raise forms.ValidationError(
                ngettext(
                    "%(count)s file attached; no model here accepts more than %(most)s "
                    "reference images.",
                    "%(count)s files attached; no model here accepts more than %(most)s "
                    "reference images.",
                    len(files),
                )
                % {"count": len(files), "most": most}
            )
        cleaned = []
        for upload in files:
            try:
                images.refuse_oversize(upload.name, upload.size)
                cleaned.append((upload.name, images.clean_image(upload.read(), name=upload.name)))
            except images.ImageRejected as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        refs = self._parent_reference() + list(data.get("references", []))
        self.job_request = jobs.JobRequest(
            model=data["model"],
            prompt=data.get("prompt") or "",
            aspect_ratio=data["aspect_ratio"],
            image_size=data.get("image_size") or None,
            count=data["count"],
            references=[c for _, c in refs],
            reference_names=[n for n, _ in refs],
            parent_image=self.parent_image,
            thinking_level=data.get("thinking_level") or None,
            grounding=bool(data.get("grounding")),
        )
        try:
            jobs.validate(self.job_request)
        except jobs.SubmitError as exc:
            self.add_error(exc.field, exc.message)
        return data


class BatchForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        required=False,
        label=gettext_lazy("Name"),
        widget=forms.TextInput(attrs={"placeholder": gettext_lazy("e.g. Spring catalogue")}),
    )
    prompts = forms.CharField(
        required=False,
        label=gettext_lazy("Prompts, one per line"),
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "placeholder": gettext_lazy("A red fox in the snow\nA lighthouse at dusk\n…"),
            }
        ),
    )
    csv_file = forms.FileField(required=False, label=gettext_lazy("Or a CSV file"))
    csv_text = forms.CharField(required=False, widget=forms.HiddenInput)
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.none(),
        to_field_name="slug",
        empty_label=None,
        label=gettext_lazy("Model"),
    )
    aspect_ratio = forms.ChoiceField(initial="1:1", label=gettext_lazy("Aspect ratio"))
    image_size = forms.ChoiceField(required=False, label=pgettext_lazy("image size", "Size"))
    count = forms.TypedChoiceField(
        coerce=int,
        initial=1,
        label=gettext_lazy("Images per prompt"),
        choices=[(n, str(n)) for n in range(1, 5)],
    )
    # Chosen on the confirm step, where both prices are shown.
    mode = forms.ChoiceField(
        required=False,
        initial="standard",
        choices=[
            ("standard", gettext_lazy("Standard — starts now")),
            ("economy", gettext_lazy("Economy — half price, ready within 24 h")),
        ],
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mine = limits.for_user(user)
        available = ModelSpec.objects.available()
        allowed = [m.pk for m in available if mine.allows_model(m)]
        self.fields["model"].queryset = available.filter(pk__in=allowed)
        self.fields["model"].label_from_instance = lambda m: m.label
        ratios, sizes = offered_choices(self.fields["model"].queryset, blank=_("Model default"))
        self.fields["aspect_ratio"].choices, self.fields["image_size"].choices = ratios, sizes

    def clean_csv_file(self):
        upload = self.cleaned_data.get("csv_file")
        if upload and upload.size > batches.MAX_CSV_BYTES:
            raise forms.ValidationError(batches.csv_too_large(upload.size))
        return upload

    def clean(self):
        data = super().clean()
        if (data.get("prompts") or "").strip() and (data.get("csv_file") or data.get("csv_text")):
            # One source only: a batch that silently took the file and dropped the typed
            # prompts (or the other way round) would not be what the person checked.
            raise forms.ValidationError(
                _(
                    "There are prompts in the box and a CSV file: a batch takes one or the "
                    "other. Empty the box to use the file, or reload the page to drop the file."
                )
            )
        return data

    @property
    def economy(self) -> bool:
        return self.cleaned_data.get("mode") == "economy"

    def plan(self, user) -> batches.Plan:
        """Parse and check every row (raises BatchError listing the bad ones)."""
        data = self.cleaned_data
        model = data["model"]
        size = data.get("image_size") or model.default_size()
        defaults = batches.Defaults(
            model=model,
            aspect_ratio=data["aspect_ratio"],
            image_size=size if model.sizes else None,
            count=data["count"],
        )
        raw = (
            data["csv_file"].read()
            if data.get("csv_file")
            else (data.get("csv_text") or "").encode()
        )
        if raw:
            self.csv_source = raw.decode("utf-8-sig", errors="replace")
            models = list(self.fields["model"].queryset)
            return batches.check(user, batches.parse_csv(raw, defaults, models), csv_rows=True)
        return batches.check(user, batches.parse_lines(data.get("prompts", ""), defaults))
