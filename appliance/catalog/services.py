"""Catalog, capacity and profile operations. Each write owns its transaction and audits inside it.

Versioning: every change to a profile's spec (any of ``SPEC_FIELDS``) writes a new, immutable
:class:`ProfileVersion` and moves ``current_version``; renaming or re-describing a profile does not.
We version every spec edit rather than only edits of a version a running deployment uses: it is
simpler, needs no look at deployments, and gives the same guarantee (a deployment points at its
version, which nothing changes). An edit that changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.catalog.catalog import FieldError, ModelEntry, default_catalog, validate_entry
from appliance.catalog.choices import Tier
from appliance.catalog.fit import Fit, check_fit
from appliance.catalog.models import SPEC_FIELDS, CustomModel, Profile, ProfileVersion, audit_snapshot, slug_validator
from appliance.catalog.permissions import fits_own_pool_by_default, may_manage_catalog
from appliance.catalog.planner import Plan, PlanRequest, plan
from appliance.catalog.specs import ExtraArgsError, chat_defaults, field_message, plan_request, planned, validate_spec
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import VIEW

PROFILE_FIELDS = ("slug", "name", "tier", "description")
REQUIRED_SPEC_FIELDS = ("model", "engine", "gpus_per_node", "max_model_len")
DEFAULT_SPEC: Mapping[str, Any] = MappingProxyType(
    {
        "precision": "auto", "kv_dtype": "auto", "nodes": 1, "min_gpu_memory_gib": None, "gpu_model": "",
        "pipeline_parallel": 1, "gpu_memory_utilization": 0.9, "max_num_seqs": None, "cpu_ram_gib": None,
        "extra_args": {}, "chat_defaults": None, "default_max_tokens": None, "reference_price_cny": None,
        "concurrency_min": None, "concurrency_max": None, "requests_per_second_min": None,
        "requests_per_second_max": None,
    }
)  # fmt: skip


def invalid(exc: FieldError) -> InvalidInput:
    """A FieldError as the API's 400, naming the field in ``details``."""
    if isinstance(exc, ExtraArgsError):
        details = {"extra_args": [exc.message], "known_flags": exc.known, "unknown_flags": exc.unknown}
        return InvalidInput(str(exc), code="unknown_flags", details=details)
    return InvalidInput(str(exc), details={exc.field: [field_message(exc)]})


def _require_platform_admin(actor: User) -> None:
    if not may_manage_catalog(actor):
        raise PermissionDenied("Only platform admins may do this.")


# --- the catalog -------------------------------------------------------------------------


def merged_catalog() -> Mapping[str, ModelEntry]:
    """Shipped entries plus admins' custom ones, by slug (one query). Built-ins win a slug clash."""
    entries = dict(default_catalog())
    for custom in CustomModel.objects.all():
        entries.setdefault(custom.slug, custom.entry())
    return MappingProxyType(entries)


def get_entry(slug: str) -> tuple[ModelEntry, CustomModel | None]:
    """One catalog entry and, for a custom one, its row."""
    builtin = default_catalog().get(slug)
    if builtin is not None:
        return builtin, None
    custom = CustomModel.objects.filter(slug=slug).first()
    if custom is None:
        raise NotFound(f"No model {slug!r} in the catalog.")
    return custom.entry(), custom


def _validated_entry(data: Mapping[str, Any]) -> ModelEntry:
    try:
        entry = validate_entry(data)
    except FieldError as exc:
        raise invalid(exc) from None
    if entry.slug in default_catalog():
        raise Conflict(f"{entry.slug!r} is a built-in model; choose another slug.", code="builtin_model")
    return entry


def _model_in_use(slug: str) -> bool:
    return ProfileVersion.objects.filter(model=slug).exists()


@transaction.atomic
def create_custom_model(actor: User, data: Mapping[str, Any]) -> CustomModel:
    _require_platform_admin(actor)
    entry = _validated_entry(data)
    try:
        with transaction.atomic():
            custom = CustomModel.objects.create(slug=entry.slug, spec=entry.to_dict(), created_by=actor)
    except IntegrityError:
        raise Conflict(f"A model {entry.slug!r} already exists.", code="duplicate") from None
    audit.record("catalog.create", actor=actor, target=custom, after=audit_snapshot(custom))
    return custom


def _lock_custom(actor: User, slug: str) -> CustomModel:
    _require_platform_admin(actor)
    custom = CustomModel.objects.select_for_update().filter(slug=slug).first()
    if custom is not None:
        return custom
    if slug in default_catalog():
        raise Conflict(f"{slug!r} is a built-in model and cannot be changed.", code="builtin_model")
    raise NotFound(f"No model {slug!r} in the catalog.")


@transaction.atomic
def replace_custom_model(actor: User, slug: str, data: Mapping[str, Any]) -> CustomModel:
    """Replace a custom entry; refused while a profile version uses it (versions must not shift under it)."""
    custom = _lock_custom(actor, slug)
    entry = _validated_entry(data)
    if entry.slug != slug:
        raise InvalidInput("The slug of an entry cannot change.", details={"slug": ["cannot change"]})
    if _model_in_use(slug):
        raise Conflict(f"Profiles use {slug!r}; add a new entry instead.", code="model_in_use")
    before = audit_snapshot(custom)
    custom.spec = entry.to_dict()
    custom.save()
    audit.record("catalog.update", actor=actor, target=custom, before=before, after=audit_snapshot(custom))
    return custom


@transaction.atomic
def delete_custom_model(actor: User, slug: str) -> None:
    custom = _lock_custom(actor, slug)
    if _model_in_use(slug):
        raise Conflict(f"Profiles use {slug!r}.", code="model_in_use")
    audit.record("catalog.delete", actor=actor, target=custom, before=audit_snapshot(custom))
    custom.delete()


# --- the capacity planner ----------------------------------------------------------------


def capacity(request: PlanRequest) -> Plan:
    """Plan against the merged catalog; a bad value is a 400 naming the planner's field."""
    try:
        return plan(request, merged_catalog())
    except FieldError as exc:
        raise invalid(exc) from None


# --- profiles ----------------------------------------------------------------------------


def _spec(data: Mapping[str, Any], base: Mapping[str, Any] | None) -> dict[str, Any]:
    """A complete spec: `base` (or the defaults) overridden by the spec fields of `data`."""
    given = {name: data[name] for name in SPEC_FIELDS if name in data}
    if base is None:
        missing = [name for name in REQUIRED_SPEC_FIELDS if name not in given]
        if missing:
            raise InvalidInput(f"{missing[0]}: required", details={name: ["required"] for name in missing})
        given.setdefault("tensor_parallel", max(given["gpus_per_node"], 1) if given["engine"] == "vllm" else 1)
    spec = {**(base or DEFAULT_SPEC), **given}
    previous = base["chat_defaults"] if base else {}
    temperatures = given.get("chat_defaults", previous or None)
    if isinstance(temperatures, Mapping):
        temperatures = {**previous, **temperatures}  # a partial edit keeps the other tasks' values
    try:
        spec["chat_defaults"] = chat_defaults(temperatures)
        validate_spec(spec, merged_catalog())
    except FieldError as exc:
        raise invalid(exc) from None
    return spec


def _new_version(profile: Profile, spec: Mapping[str, Any], actor: User | None, note: str) -> ProfileVersion:
    last = profile.versions.aggregate(last=Max("number"))["last"] or 0
    version = ProfileVersion.objects.create(profile=profile, number=last + 1, created_by=actor, note=note, **spec)
    profile.current_version = version
    profile.save(update_fields=["current_version", "updated_at"])
    return version


def _check_identity(data: Mapping[str, Any], *, creating: bool = False) -> None:
    unknown = sorted(set(data) - set(PROFILE_FIELDS) - set(SPEC_FIELDS) - {"note"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", details={name: ["unknown field"] for name in unknown})
    for name in ("slug", "name") if creating else ():
        if not str(data.get(name) or "").strip():
            raise InvalidInput(f"{name}: required", details={name: ["required"]})
    try:
        slug_validator(data.get("slug", "x"))
    except ValidationError as exc:
        raise InvalidInput(f"slug: {exc.messages[0]}", details={"slug": exc.messages}) from None
    if "tier" in data and data["tier"] not in Tier.values:
        raise InvalidInput(f"tier: not one of {', '.join(Tier.values)}", details={"tier": ["invalid choice"]})


@transaction.atomic
def create_profile(actor: User, **data: Any) -> Profile:
    _require_platform_admin(actor)
    _check_identity(data, creating=True)
    spec = _spec(data, None)
    identity = {name: data[name] for name in PROFILE_FIELDS if name in data}
    try:
        with transaction.atomic():
            profile = Profile.objects.create(**identity)
    except IntegrityError:
        raise Conflict("A profile with that slug or name already exists.", code="duplicate") from None
    _new_version(profile, spec, actor, data.get("note", ""))
    audit.record("profile.create", actor=actor, target=profile, after=audit_snapshot(profile))
    return profile


def _lock_profile(profile_id: int) -> Profile:
    profile = (
        Profile.objects.active().select_for_update().select_related("current_version").filter(pk=profile_id).first()
    )
    if profile is None or profile.current_version is None:
        raise NotFound("Profile not found.")
    return profile


@transaction.atomic
def update_profile(actor: User, profile_id: int, **data: Any) -> Profile:
    """Rename in place; a changed spec becomes a new version (see the module docstring)."""
    _require_platform_admin(actor)
    _check_identity(data)
    profile = _lock_profile(profile_id)
    if data.get("slug", profile.slug) != profile.slug:
        raise InvalidInput("slug: cannot change", details={"slug": ["cannot change"]})
    before = audit_snapshot(profile)
    for name in ("name", "tier", "description"):
        if name in data:
            setattr(profile, name, data[name])
    try:
        with transaction.atomic():
            profile.save()
    except IntegrityError:
        raise Conflict("Another profile already has that name.", code="duplicate") from None
    current = profile.current_version
    assert current is not None  # _lock_profile guarantees it
    spec = _spec(data, current.spec())
    if spec != current.spec():
        _new_version(profile, spec, actor, data.get("note", ""))
    after = audit_snapshot(profile)
    if after != before:
        audit.record("profile.update", actor=actor, target=profile, before=before, after=after)
    return profile


@transaction.atomic
def archive_profile(actor: User, profile_id: int) -> None:
    """Hide a profile; its versions stay for the deployments that use them."""
    _require_platform_admin(actor)
    profile = _lock_profile(profile_id)
    before = audit_snapshot(profile)
    profile.archived_at = timezone.now()
    profile.save(update_fields=["archived_at", "updated_at"])
    audit.record("profile.archive", actor=actor, target=profile, before=before, after=audit_snapshot(profile))


def spec_plan(version: ProfileVersion, catalog: Mapping[str, ModelEntry] | None = None) -> Plan | None:
    """The planner's answer for a version on its own reference hardware (None if it no longer plans)."""
    try:
        return planned(plan_request(version.spec()), catalog or merged_catalog())
    except FieldError:
        return None


# --- fit checks --------------------------------------------------------------------------


def fit_department(actor: User, department_id: Any) -> Department | None:
    """The pool a fit check looks at: the one asked for (if visible), else the actor's own department.

    Platform admins and auditors, who belong to no department, get the whole appliance by default.
    """
    if department_id in (None, ""):
        return actor.department if fits_own_pool_by_default(actor) else None
    try:
        wanted = int(department_id)
    except (TypeError, ValueError):
        raise InvalidInput("department: must be an id", details={"department": ["must be an id"]}) from None
    department = Department.objects.restrict(actor, VIEW).filter(pk=wanted).first()
    if department is None:
        raise InvalidInput("department: not found", details={"department": ["not found"]})
    return department


def fits(profiles: Iterable[Profile], department: Department | None) -> dict[int, Fit]:
    """Each profile's fit on the free units (of `department`'s pool); a fixed number of queries."""
    from appliance.catalog.inventory import free_nodes, scope_label

    catalog, nodes, where = merged_catalog(), free_nodes(department), scope_label(department)
    return {
        profile.pk: check_fit(profile.current_version.spec(), catalog, nodes, where=where)
        for profile in profiles
        if profile.current_version is not None
    }
