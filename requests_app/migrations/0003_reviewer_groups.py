"""The "reviewer" and "publisher" groups.

reviewer: sees removal requests, their items, references and events, and decides them
(``review_removalrequest``). publisher: sees the same, and publishes blocklist releases
(``optout.publish_blocklist``, from the admin's release list). Re-running adds what is missing and
removes nothing, so a group an administrator extended keeps its extra permissions.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_REQUESTS = [
    ("requests_app", "view_removalrequest"),
    ("requests_app", "view_removalitem"),
    ("requests_app", "view_referencesignal"),
    ("requests_app", "view_requestevent"),
]
GROUPS = {
    "reviewer": [*VIEW_REQUESTS, ("requests_app", "review_removalrequest")],
    "publisher": [
        *VIEW_REQUESTS,
        ("optout", "view_blocklistentry"),
        ("optout", "view_release"),
        ("optout", "publish_blocklist"),
    ],
}


def _ensure_permissions(apps, using):
    # Permissions are normally created after the last migration (post_migrate);
    # on a fresh database they do not exist yet when this runs.
    for label in ("optout", "requests_app"):
        try:
            config = apps.get_app_config(label)
        except LookupError:
            continue
        original = getattr(config, "models_module", None)
        config.models_module = original or True
        try:
            create_permissions(config, apps=apps, verbosity=0, using=using)
        finally:
            config.models_module = original


def create_groups(apps, schema_editor):
    using = schema_editor.connection.alias
    _ensure_permissions(apps, using)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        for app_label, codename in wanted:
            # Tolerant: a permission of a model that does not exist (yet) is skipped.
            permission = (
                Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
            )
            if permission is not None:
                group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0002_events_append_only"),
        ("optout", "0003_publish_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    # Going back keeps the groups: people may be members, and the forward step is idempotent.
    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
