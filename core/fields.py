"""
Model fields whose values are stored encrypted (core/crypto.py: Fernet under ENCRYPTION_KEYS).

A loaded row keeps the ciphertext (a `Sealed`) until the attribute is read, and only then decrypts: a row
whose value no key opens fails where its secret is used (one delivery, one call), not every query that
loads the row (an admin list, a sweep over integrations). Saving a row whose secret was never read writes
the same ciphertext back, moved under the primary key when an older one opened it (so a save racing
`rotate_encryption_keys` cannot put an old-key value back).

values() and values_list() give `Sealed` values: open them with `field.open(value)`. The ciphertext differs
on every write, so the only lookups are `isnull` and `exact` against the empty value.
"""

import json

from django.db import models
from django.db.models.lookups import Exact
from django.db.models.query_utils import DeferredAttribute

from core import crypto


class Sealed:
    """A stored value not yet decrypted: its Fernet token."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __eq__(self, other):
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self):
        return hash(self.token)

    def __repr__(self):
        return "<Sealed>"  # never the token: reprs end up in logs and error pages


class _OpenOnRead(DeferredAttribute):
    """The attribute: decrypts the stored token on first read and keeps the plaintext."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            value = self.field.open(value, instance)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value):
        # A data descriptor, so reads always come through __get__ (Django's own is a non-data one).
        instance.__dict__[self.field.attname] = value


class _EmptyExact(Exact):
    """`field=""` (or `field={}`): is there no value. Anything else could never match a fresh ciphertext."""

    def get_prep_lookup(self):
        if self.rhs not in ("", {}):
            raise TypeError(
                f"{self.lhs.output_field.model.__name__}.{self.lhs.output_field.name} is encrypted: it can only "
                "be compared with its empty value."
            )
        return ""


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token; "" stays "" (nothing to hide)."""

    descriptor_class = _OpenOnRead
    empty_value = ""

    def dump(self, value) -> str:
        return str(value)

    def load(self, text: str):
        return text

    def open(self, value, instance=None):
        """The plaintext of a Sealed value; core.crypto.DecryptionError when no key opens it."""
        if not isinstance(value, Sealed):
            return value
        where = f"{self.model.__name__}.{self.name}"
        if instance is not None and instance.pk is not None:
            where += f" of row {instance.pk}"
        return self.load(crypto.decrypt(value.token, what=where))

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return self._empty() if value == "" else None
        return Sealed(value)

    def _empty(self):
        return self.empty_value

    def to_python(self, value):
        return value

    def pre_save(self, model_instance, add):
        # The stored form, not the attribute: a save must not decrypt a value nobody read.
        if self.attname in model_instance.__dict__:
            return model_instance.__dict__[self.attname]
        return super().pre_save(model_instance, add)

    def get_prep_value(self, value):
        return value  # encrypted in get_db_prep_value: lookups must not reach it with a plaintext

    def get_db_prep_value(self, value, connection, prepared=False):
        if isinstance(value, Sealed):
            # Written back unread: under the primary key if an older one opens it, else as it was.
            if crypto.opens(value.token) and not crypto.under_primary(value.token):
                return crypto.reencrypt(value.token)
            return value.token
        if value is None:
            return None
        if value == self.empty_value or value == "":
            return ""
        return crypto.encrypt(self.dump(value))

    def get_lookup(self, lookup_name):
        if lookup_name == "exact":
            return _EmptyExact
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        return None  # Django answers FieldError "Unsupported lookup"

    def value_to_string(self, obj):
        # dumpdata and the test runner's serialized rollback get the plaintext: a dump holds secrets.
        value = self.value_from_object(obj)
        return value if isinstance(value, str) else self.dump(value)

    def formfield(self, **kwargs):
        return None  # never in a generated form: secrets are entered through fields that do not echo them


class EncryptedJSONField(EncryptedTextField):
    """A JSON object stored as one Fernet token; {} is stored as "" (nothing to hide)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def _empty(self):
        return {}

    @property
    def empty_value(self):
        return {}

    def dump(self, value) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def load(self, text: str):
        return json.loads(text)

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value) if value else {}
        return value
