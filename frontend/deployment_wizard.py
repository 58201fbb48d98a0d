"""The deployment wizard's first question answered for the user: which profiles this hardware can run.

Every active profile is checked against the chosen pool's free units (the same fit check as the API);
the ones that fit come first and the best of them is preselected, so a CPU-only appliance starts on its
CPU profile rather than on a 7B model it cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from appliance.accounts.models import Department
from appliance.catalog import services as catalog_services
from appliance.catalog.choices import FitStatus
from appliance.catalog.fit import Fit
from appliance.catalog.models import Profile
from appliance.deployments.models import Deployment

_ORDER = {FitStatus.FITS: 0, FitStatus.ADAPTED: 1, FitStatus.NO_FIT: 2}


@dataclass(frozen=True)
class ProfileOption:
    profile: Profile
    fit: Fit

    @property
    def runnable(self) -> bool:
        return self.fit.status != FitStatus.NO_FIT

    @property
    def status_label(self) -> str:
        return str(FitStatus(self.fit.status).label)

    @property
    def on_gpu(self) -> bool:
        version = self.profile.current_version
        return version is not None and version.gpus_per_node > 0


def pick_department(pools: QuerySet[Department], wanted: str | None) -> Department | None:
    """The pool asked for if the user manages it, else their first."""
    chosen = pools.filter(pk=int(wanted)).first() if wanted and wanted.isdigit() else None
    return chosen or pools.first()


def profile_options(department: Department | None) -> list[ProfileOption]:
    """Active profiles with their fit in `department`'s pool: runnable first, GPU before CPU among them."""
    profiles = list(
        Profile.objects.filter(archived_at__isnull=True, current_version__isnull=False).select_related(
            "current_version"
        )
    )
    fits = catalog_services.fits(profiles, department)
    options = [ProfileOption(p, fits[p.pk]) for p in profiles if p.pk in fits]
    return sorted(options, key=lambda o: (_ORDER[FitStatus(o.fit.status)], not o.on_gpu, o.profile.name))


def free_name(base: str) -> str:
    """A deployment name not yet taken: the profile's slug, then slug-2, slug-3…"""
    base = base.replace(".", "-").replace("_", "-")[:58]
    taken = set(Deployment.objects.filter(name__startswith=base).values_list("name", flat=True))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)
