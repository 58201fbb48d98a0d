"""One populated appliance for the authorization matrix and the API fuzz run.

Two departments hold a copy of every department-scoped object: ``eng_ml`` (a child of ``eng``, whose
admin is alice) and ``fin`` (admin dave). Each copy belongs to a member who is none of the principals
("owner"), so a principal reaches it only through its role, never as its owner. Everything is made
through the services the console itself uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User
from appliance.accounts.services import create_api_key
from appliance.catalog.models import Profile, ProfileVersion
from appliance.catalog.seeds import seed_profiles
from appliance.chat.models import Conversation, Message
from appliance.deployments import services as deployment_services
from appliance.gpus import services as gpu_services
from appliance.gpus.models import Gpu, GpuUnit, Node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory
from appliance.images.catalog import default_image, record_node_images
from appliance.images.models import ImageImport, NodeImage
from appliance.quotas import services as quota_services
from appliance.quotas.models import UsageRecord
from appliance.safety import services as safety_services
from appliance.safety.models import SafetyHit
from appliance.sso import services as sso_services
from conftest import make_user

# The departments whose objects the matrix visits, and who stands where relative to each.
OBJECT_DEPARTMENTS = ("eng_ml", "fin")
PRINCIPALS_BY_DEPARTMENT = {
    "eng_ml": {"member": "carol", "admin_same": "alice", "admin_other": "dave"},
    "fin": {"member": "charlie", "admin_same": "dave", "admin_other": "alice"},
}


@dataclass
class World:
    users: dict[str, User]
    departments: dict[str, Department]
    # kind -> department key -> primary key; global objects are stored under both keys.
    ids: dict[str, dict[str, int]] = field(default_factory=dict)
    engine: str = "llamacpp"
    catalog_slug: str = ""

    def put(self, kind: str, dept: str, pk: int) -> None:
        self.ids.setdefault(kind, {})[dept] = pk

    def put_global(self, kind: str, pk: int) -> None:
        for dept in OBJECT_DEPARTMENTS:
            self.put(kind, dept, pk)


def _node() -> Node:
    node = Node.objects.create(name="node-1", hostname="node-1")
    apply_inventory(node.pk, collect_simulated("4x RTX 4090 24GB", "node-1"))
    images = [default_image(e) for e in settings.APPLIANCE_ENGINE_IMAGES]  # the images deployments run, on the node
    rows: list[dict[str, object]] = [
        {"tag": tag, "image_id": f"sha256:{i:064d}", "size_bytes": 1, "created": ""} for i, tag in enumerate(images)
    ]
    record_node_images(node, rows)
    return node


def _department_objects(world: World, key: str, root: User, unit_ids: list[int]) -> None:
    dept = world.departments[key]
    owner = make_user(f"owner-{key}", Role.MEMBER, dept)
    world.users[f"owner_{key}"] = owner
    world.put("department", key, dept.pk)
    world.put("user", key, owner.pk)
    key_row, _secret = create_api_key(owner, name=f"owner-{key}")
    world.put("apikey", key, key_row.pk)
    gpu_services.assign_units(root, unit_ids, dept.pk)
    world.put("gpuunit", key, unit_ids[0])
    world.put("gpuquota", key, gpu_services.set_quota(root, dept.pk, max_units=4, max_memory_gib=None).pk)
    quota = quota_services.create_quota(root, department_id=dept.pk, tokens_per_day=100_000)
    world.put("quota", key, quota.pk)
    profile = Profile.objects.get(slug="smollm2-cpu")
    dep = deployment_services.create_deployment(
        root, name=f"dep-{key}", profile_id=profile.pk, department_id=dept.pk, start=False
    )
    world.put("deployment", key, dep.pk)
    conversation = Conversation.objects.create(user=owner, title=f"chat of {key}", model=dep.served_model_name)
    Message.objects.create(conversation=conversation, role="user", content="hello")
    world.put("conversation", key, conversation.pk)
    usage = UsageRecord.objects.create(
        uid=f"u-{key}", user=owner, department=dept, model=dep.served_model_name, prompt_tokens=3,
        completion_tokens=5, day=timezone.localdate(), created_at=timezone.now(),
    )  # fmt: skip
    world.put("usagerecord", key, usage.pk)
    word_list = safety_services.create_list(root, name=f"words-{key}", department_id=dept.pk)
    world.put("wordlist", key, word_list.pk)
    hit = SafetyHit.objects.create(
        department=dept, user=owner, username=owner.username, word_list=word_list, list_name=word_list.name,
        word="x", action="record", stage="prompt", channel="chat",
    )  # fmt: skip
    world.put("safetyhit", key, hit.pk)
    rule = sso_services.create_rule(root, source="ldap", value=f"cn={key},ou=groups,dc=example,dc=cn",
                                    department_id=dept.pk, role="member")  # fmt: skip
    world.put("signinrule", key, rule.pk)
    from appliance.audit.models import AuditRecord

    world.put("auditrecord", key, AuditRecord.objects.filter(department=dept).latest("pk").pk)


def build_world(personas: dict[str, User], departments: dict[str, Department]) -> World:
    """Populate the database; call inside the test's transaction."""
    seed_profiles(Profile, ProfileVersion)
    world = World(users=dict(personas), departments=dict(departments))
    root = personas["root"]
    with transaction.atomic():
        node = _node()
        units = list(GpuUnit.objects.filter(gpu__node=node).order_by("pk").values_list("pk", flat=True))
        _department_objects(world, "eng_ml", root, units[:2])
        _department_objects(world, "fin", root, units[2:])
        world.put_global("node", node.pk)
        world.put_global("gpu", Gpu.objects.filter(node=node).order_by("pk").first().pk)  # type: ignore[union-attr]
        world.put_global("profile", Profile.objects.get(slug="smollm2-cpu").pk)
        world.put_global("nodeimage", NodeImage.objects.filter(node=node).order_by("pk").first().pk)  # type: ignore[union-attr]
        path = "/var/lib/appliance/images/x.tar"
        imp = ImageImport.objects.create(node=node, path=path, size_bytes=1, created_by=root)
        world.put_global("imageimport", imp.pk)
    return world
