from django.db import migrations, models

APPEND_ONLY = """
CREATE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_entry_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;
DROP TRIGGER IF EXISTS audit_entry_no_update_delete ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_append_only();
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("actor", models.CharField(db_index=True, max_length=150)),
                ("actor_id", models.BigIntegerField(null=True)),
                ("action", models.CharField(choices=[("refund", "refund"), ("create", "create"), ("change", "change"), ("delete", "delete"), ("retry", "retry a subscription's payment"), ("end", "end a subscription")], db_index=True, max_length=16)),
                ("target_type", models.CharField(db_index=True, max_length=64)),
                ("target_id", models.CharField(db_index=True, max_length=64)),
                ("target_repr", models.CharField(blank=True, max_length=255)),
                ("customer_id", models.UUIDField(blank=True, db_index=True, null=True)),
                ("changes", models.JSONField(blank=True, default=dict)),
                ("reason", models.TextField(blank=True)),
            ],
            options={
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit log",
                "ordering": ["-at", "-id"],
                "default_permissions": ("view",),
                "constraints": [models.CheckConstraint(condition=models.Q(models.Q(("action__in", ["refund", "retry", "end"]), _negated=True), models.Q(("reason", ""), _negated=True), _connector="OR"), name="audit_money_action_has_reason")],
            },
        ),
        migrations.RunSQL(APPEND_ONLY, DROP),
    ]
