"""Print what this node's GPUs look like to NVML (or the simulated spec), without touching the database."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from appliance.gpus.choices import GIB
from appliance.gpus.inventory import NodeInventory
from appliance.gpus.simulated import collect_for_settings


class Command(BaseCommand):
    help = "Show this node's GPUs as NVML sees them (APPLIANCE_SIMULATED_GPUS replaces NVML when set)."
    # No system checks and no migration check: both would open a database connection.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="the full inventory as JSON")
        parser.add_argument("--simulated", metavar="SPEC", help="use this spec instead of APPLIANCE_SIMULATED_GPUS")

    def handle(self, *args: Any, **options: Any) -> None:
        # A missing driver or NVML error is data (inventory.error), not a failure of the command.
        spec = options["simulated"] or settings.APPLIANCE_SIMULATED_GPUS
        inventory = collect_for_settings(spec, settings.NODE_NAME)
        if options["json"]:
            self.stdout.write(json.dumps(inventory.to_dict(), indent=2, ensure_ascii=False))
        else:
            self.stdout.write(summary(inventory))


def summary(inventory: NodeInventory) -> str:
    lines = [
        f"driver {inventory.driver_version or '-'}  CUDA {inventory.cuda_driver_version or '-'}"
        f"  NVML {inventory.nvml_version or '-'}{'  (simulated)' if inventory.simulated else ''}"
    ]
    if inventory.error:
        lines.append(inventory.error)
    for gpu in inventory.gpus:
        memory = f"{(gpu.memory_total or 0) / GIB:.1f} GiB"
        mig = "MIG on" if gpu.mig_mode_current else "MIG off"
        lines.append(f"GPU {gpu.index}  {gpu.name}  {memory}  {mig}  {gpu.uuid}  {gpu.pci_bus_id or ''}")
        lines.extend(f"  MIG {mig_dev.profile}  {mig_dev.uuid}" for mig_dev in gpu.mig_devices)
    return "\n".join(lines)
