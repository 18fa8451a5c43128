from __future__ import annotations

from django import forms

from generations import images, jobs
from generations.models import ASPECT_RATIOS, ModelSpec


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else ([data] if data else [])
        return [super(MultipleImageField, self).clean(f, initial) for f in files]


class StudioForm(forms.Form):
    prompt = forms.CharField(
        label="Prompt",
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "placeholder": "A watercolor fox reading a newspaper in a rainy café…",
                "autofocus": True,
            }
        ),
        required=False,
    )
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.none(), to_field_name="slug", empty_label=None
    )
    aspect_ratio = forms.ChoiceField(
        label="Aspect ratio", choices=[(a, a) for a in ASPECT_RATIOS], initial="1:1"
    )
    image_size = forms.ChoiceField(
        label="Size", required=False, choices=[("", "—"), ("1K", "1K"), ("2K", "2K"), ("4K", "4K")]
    )
    count = forms.TypedChoiceField(
        label="Images", coerce=int, initial=1, choices=[(n, str(n)) for n in range(1, 5)]
    )
    references = MultipleImageField(label="Reference images", required=False)
    again = forms.BooleanField(required=False, widget=forms.HiddenInput)  # past the duplicate guard

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = jobs.available_models()

    def clean_references(self):
        files = self.cleaned_data.get("references") or []
        models = list(self.fields["model"].queryset)
        model = next((m for m in models if m.slug == self.data.get("model")), None)
        if model and len(files) > model.max_reference_images:  # refused before reading any
            raise forms.ValidationError(jobs.too_many_references(model, len(files)))
        most = max((m.max_reference_images for m in models), default=0)
        if len(files) > most:
            raise forms.ValidationError(
                f"{len(files)} files attached; no model here accepts more than {most} "
                "reference images."
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
        self.job_request = jobs.JobRequest(
            model=data["model"],
            prompt=data.get("prompt") or "",
            aspect_ratio=data["aspect_ratio"],
            image_size=data.get("image_size") or None,
            count=data["count"],
            references=[c for _, c in data.get("references", [])],
            reference_names=[n for n, _ in data.get("references", [])],
        )
        try:
            jobs.validate(self.job_request)
        except jobs.SubmitError as exc:
            self.add_error(exc.field, exc.message)
        return data
