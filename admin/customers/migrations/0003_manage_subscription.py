from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("customers", "0002_refund_any_amount")]

    operations = [
        migrations.AlterModelOptions(
            name="customerbilling",
            options={
                "default_permissions": (),
                "managed": False,
                "permissions": [
                    ("view_customer_billing", "Can view customers' payments, subscriptions and refunds"),
                    ("issue_refund", "Can refund customers' payments"),
                    ("refund_any_amount", "Can refund any amount (no support limit)"),
                    ("manage_subscription", "Can retry a subscription's renewal or end it"),
                ],
                "verbose_name": "customer billing",
            },
        ),
    ]
