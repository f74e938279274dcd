"""
Organizations, memberships and users in the admin. Membership changes go through the key services (a lost
org-admin role revokes the user's org keys); org admins see and add only the users of their organizations.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.urls import reverse

from organizations.models import Membership, Organization
from tokens.memberships import delete_membership, save_membership

from .mixins import OrganizationScopedAdmin, OrganizationScopedInline

User = get_user_model()


class MembershipChangesMixin:
    """Memberships are saved and removed through the key services (a lost org-admin role revokes the
    user's org keys there), from the membership page and from the inlines alike."""

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            delete_membership(membership, actor=request.user)
        for membership in memberships:
            save_membership(membership, actor=request.user)
        formset.save_m2m()


class AddMemberForm(AdminUserCreationForm):
    """
    An org admin's "add user". The username is the person's e-mail address, and whether an address has an
    account in another organization is not theirs to learn (security finding 10a): such an address is
    answered exactly like a new one, and the existing account joins as it is — its password, name and flags
    untouched (the password typed here is checked as for a new account, then not used) — marked as an
    existing account, which this organization's admins may never manage. Addresses of users the org admin
    already sees are named as taken, as Django does.
    """

    visible_users = User.objects.none()  # set per request: the users the org admin sees
    existing_user = None

    def clean_username(self):
        username = self.cleaned_data.get("username")
        account = User.objects.filter(username__iexact=username).first() if username else None
        if account is None or self.visible_users.filter(pk=account.pk).exists():
            return super().clean_username()
        self.existing_user = account
        return username

    def _get_validation_exclusions(self):
        exclude = super()._get_validation_exclusions()
        if self.existing_user is not None:
            exclude.add("username")  # the account exists and is not made again: nothing to find unique
        return exclude


class MembershipInline(OrganizationScopedInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class UserMembershipInline(OrganizationScopedInline):
    """Memberships on the user page: an org admin sees and grants only memberships of their orgs."""

    model = Membership
    extra = 0
    fields = ["organization", "role"]
    verbose_name_plural = "organizations"

    def get_min_num(self, request, obj=None, **kwargs):
        # A user an org admin creates must belong to one of their organizations, or it would vanish.
        return 0 if request.user.is_superuser else 1

    def get_extra(self, request, obj=None, **kwargs):
        return 0 if obj else 1


@admin.register(Organization)
class OrganizationAdmin(MembershipChangesMixin, OrganizationScopedAdmin):
    list_display = ["name", "slug", "notification_email", "member_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj):
        return obj._members

    def role_allows(self, request, action, obj=None):
        if action in ("add", "delete") and not request.user.is_superuser:
            return False  # organizations are created and removed by platform staff
        return super().role_allows(request, action, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["slug"]

    def get_prepopulated_fields(self, request, obj=None):
        # The slug is read-only to org admins, and a read-only field cannot be prepopulated.
        return self.prepopulated_fields if request.user.is_superuser else {}


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user"]
    readonly_fields = ["existing_account"]

    def save_model(self, request, obj, form, change):
        save_membership(obj, actor=request.user)

    def delete_model(self, request, obj):
        delete_membership(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user", "organization"):
            delete_membership(membership, actor=request.user)


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(MembershipChangesMixin, OrganizationScopedAdmin, DjangoUserAdmin):
    """
    Users, scoped: an org admin sees the users of the organizations they administer and may edit only those
    who belong to no other organization (else editing a password would reach into another tenant) and who
    are not superusers. Org admins can never grant superuser, staff-wide permissions or groups.
    """

    inlines = [UserMembershipInline]
    list_display = ["username", "email", "first_name", "last_name", "is_active", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_superuser"]
    limited_fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Status", {"fields": ("is_active", "last_login", "date_joined")}),
    )

    @property
    def tenancy(self):
        # A user belongs to organizations through memberships: the org admins' own users are theirs.
        return Membership.objects.tenancy

    def scope_queryset(self, request, queryset):
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=Membership.objects.restrict(request.user, "change").values("user_id"))

    def role_allows(self, request, action, obj=None):
        user = request.user
        if user.is_superuser:
            return True
        if not Organization.objects.tenancy.reaches_any(user, "add"):
            return False  # administers no organization
        if obj is None or action == "view":
            return True
        if obj.is_superuser:
            return False
        # Only users wholly inside your organizations, whose accounts were made there (not existing accounts
        # added by their address), are yours to change or delete.
        yours = Organization.objects.restrict(user, "change")
        return not obj.memberships.filter(~Q(organization__in=yours) | Q(existing_account=True)).exists()

    def get_fieldsets(self, request, obj=None):
        if request.user.is_superuser or obj is None:
            return super().get_fieldsets(request, obj)
        return self.limited_fieldsets

    def get_form(self, request, obj=None, **kwargs):
        if obj is None and not request.user.is_superuser:
            kwargs["form"] = type(
                "AddMemberForm", (AddMemberForm,), {"visible_users": self.get_queryset(request)}
            )
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return []
        # A username taken elsewhere could not be given, and the refusal would name it (finding 10a).
        return ["last_login", "date_joined"] if obj is None else ["username", "last_login", "date_joined"]

    def save_form(self, request, form, change):
        if getattr(form, "existing_user", None) is not None:
            return form.existing_user  # joins as it is; the formsets add its memberships
        return super().save_form(request, form, change)

    def save_model(self, request, obj, form, change):
        if getattr(form, "existing_user", None) is not None:
            return  # an existing account: its password, name and flags are not this org admin's to set
        if not request.user.is_superuser:
            # Whatever was posted: users made by org admins log in to the admin and are never superusers.
            obj.is_staff = True
            obj.is_superuser = False
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        existing = getattr(form, "existing_user", None)
        if existing is None:
            return super().save_related(request, form, formsets, change)
        # Only the memberships are saved (the form itself was not), on the existing account.
        for formset in formsets:
            formset.instance = existing
            for membership_form in formset.forms:
                membership_form.instance.existing_account = True
            self.save_formset(request, form, formset, change=change)

    def response_add(self, request, obj, post_url_continue=None):
        if request.user.is_superuser:
            return super().response_add(request, obj, post_url_continue)
        # One answer, naming the address as typed, whether it was new or had an account elsewhere (no user's
        # page, no id in a popup): the org admin finds the user in the list either way.
        address = request.POST.get("username", "").strip()
        self.message_user(
            request,
            f"“{address}” was added. If the address already had an account, its password and details are "
            "unchanged and only its owner can change them.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:auth_user_changelist"))
