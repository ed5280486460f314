from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count

from catalog.models import DeletionLog, Film, Plan


@admin.register(Film)
class FilmAdmin(admin.ModelAdmin):
    list_display = ["title", "active", "plan_count", "updated_at"]
    list_filter = ["active"]
    search_fields = ["title", "description", "=id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fields = ["id", "title", "description", "active", "created_at", "updated_at"]
    actions = ["activate", "deactivate"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(plan_count=Count("plans"))

    @admin.display(description="plans", ordering="plan_count")
    def plan_count(self, film: Film) -> int:
        return film.plan_count

    @admin.action(description="Activate selected films")
    def activate(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected films")
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, False)

    def _set_active(self, request, queryset, active: bool) -> None:
        # save() per film (not queryset.update) so updated_at moves and etl sees the change.
        changed = 0
        for film in queryset.filter(active=not active):
            film.active = active
            film.save(update_fields=["active", "updated_at"])
            changed += 1
        self.message_user(request, f"{changed} film(s) {'activated' if active else 'deactivated'}.")


class PlanAdminForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        films = cleaned.get("films")
        all_films = cleaned.get("all_films")
        if all_films and films:
            self.add_error(
                "films", "A plan that covers all films lists no films: clear the list or untick it."
            )
        elif cleaned.get("active") and not all_films and films is not None and not films:
            self.add_error(
                "films",
                "An active plan must cover something: choose films or tick “covers all films”.",
            )
        return cleaned


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanAdminForm
    list_display = ["name", "price", "period", "refund_window_days", "coverage", "active"]
    list_filter = ["active", "currency", "period_unit", "all_films"]
    search_fields = ["name", "description", "=id"]
    filter_horizontal = ["films"]
    readonly_fields = ["id", "price", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "name", "description", "active"]}),
        (
            "Price and period",
            {
                "fields": [
                    ("price_amount", "currency"),
                    "price",
                    ("period_count", "period_unit"),
                    "refund_window_days",
                ]
            },
        ),
        ("Films", {"fields": ["all_films", "films"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    actions = ["activate", "deactivate"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(film_count=Count("films"))

    @admin.display(description="price", ordering="price_amount")
    def price(self, plan: Plan) -> str:
        return plan.price_display

    @admin.display(description="period")
    def period(self, plan: Plan) -> str:
        return plan.period_display

    @admin.display(description="films")
    def coverage(self, plan: Plan) -> str:
        return "all films" if plan.all_films else f"{plan.film_count} film(s)"

    @admin.action(description="Activate selected plans")
    def activate(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected plans")
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, False)

    def _set_active(self, request, queryset, active: bool) -> None:
        # save() per plan (not queryset.update) so updated_at moves and etl sees the change.
        changed = 0
        for plan in queryset.filter(active=not active):
            plan.active = active
            plan.save(update_fields=["active", "updated_at"])
            changed += 1
        self.message_user(request, f"{changed} plan(s) {'activated' if active else 'deactivated'}.")


@admin.register(DeletionLog)
class DeletionLogAdmin(admin.ModelAdmin):
    """Read-only: what etl propagates to billing as deactivations."""

    list_display = ["deleted_at", "model", "object_id"]
    list_filter = ["model"]
    search_fields = ["=object_id"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
