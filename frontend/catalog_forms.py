"""Forms of the profile and catalog pages; the services check the values, these only parse them."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from appliance.catalog.choices import KV_DTYPES, PRECISIONS, Engine, Tier
from appliance.catalog.models import SPEC_FIELDS


class ProfileForm(forms.Form):
    slug = forms.CharField(label=_("Slug"), max_length=64)
    name = forms.CharField(label=_("Name"), max_length=128)
    tier = forms.ChoiceField(label=_("Tier"), choices=Tier.choices, initial=Tier.CUSTOM)
    description = forms.CharField(label=_("Description"), widget=forms.Textarea(attrs={"rows": 2}), required=False)
    model = forms.ChoiceField(label=_("Model"))
    engine = forms.ChoiceField(label=_("Engine"), choices=Engine.choices)
    precision = forms.ChoiceField(label=_("Precision"), choices=[(p, p) for p in PRECISIONS], initial="auto")
    kv_dtype = forms.ChoiceField(label=_("KV cache dtype"), choices=[(k, k) for k in KV_DTYPES], initial="auto")
    nodes = forms.IntegerField(label=_("Nodes"), initial=1)
    gpus_per_node = forms.IntegerField(label=_("GPUs per node"), initial=1)
    min_gpu_memory_gib = forms.FloatField(label=_("Minimum memory per GPU (GiB)"), required=False)
    gpu_model = forms.CharField(label=_("Reference GPU"), max_length=64, required=False)
    tensor_parallel = forms.IntegerField(label=_("Tensor parallel size"), initial=1)
    pipeline_parallel = forms.IntegerField(label=_("Pipeline parallel size"), initial=1)
    max_model_len = forms.IntegerField(label=_("Max model length (tokens)"), initial=4096)
    gpu_memory_utilization = forms.FloatField(label=_("GPU memory utilisation"), initial=0.9)
    max_num_seqs = forms.IntegerField(label=_("Max sequences"), required=False)
    cpu_ram_gib = forms.FloatField(label=_("Host RAM per node (GiB)"), required=False)
    extra_args = forms.JSONField(label=_("Engine extra arguments (JSON)"), initial=dict, required=False)
    chat_defaults = forms.JSONField(label=_("Chat defaults: temperature per task (JSON)"), required=False)
    default_max_tokens = forms.IntegerField(
        label=_("Default answer length in chat (tokens)"),
        required=False,
        min_value=1,
        help_text=_("Used when a user sets no max tokens; empty: up to half the model length."),
    )
    reference_price_cny = forms.IntegerField(label=_("Reference price (CNY)"), required=False)
    concurrency_min = forms.IntegerField(label=_("Concurrent users, from"), required=False)
    concurrency_max = forms.IntegerField(label=_("Concurrent users, to"), required=False)
    requests_per_second_min = forms.IntegerField(label=_("Requests per second, from"), required=False)
    requests_per_second_max = forms.IntegerField(label=_("Requests per second, to"), required=False)
    note = forms.CharField(label=_("Note on this version"), max_length=255, required=False)

    def service_data(self) -> dict[str, Any]:
        """Cleaned values as the services take them (an empty JSON box means "{}" for extra arguments)."""
        data = dict(self.cleaned_data)
        if data.get("extra_args") is None:
            data["extra_args"] = {}
        if data.get("chat_defaults") is None:
            data.pop("chat_defaults", None)
        return data


assert set(SPEC_FIELDS) <= set(ProfileForm.base_fields)


class CustomModelForm(forms.Form):
    entry = forms.CharField(
        label=_("Catalog entry (JSON, the fields of catalog.json)"), widget=forms.Textarea(attrs={"rows": 12})
    )

    def clean_entry(self) -> Any:
        try:
            return json.loads(self.cleaned_data["entry"])
        except ValueError as exc:
            raise forms.ValidationError(_("Not valid JSON: %(error)s") % {"error": exc}) from None
