"""`rotate_encryption_keys`: re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from core import crypto
from core.fields import EncryptedTextField

BATCH = 500  # rows locked and re-encrypted per transaction

PROCEDURE = """
Rotating a key:
  1. Make a key: `manage.py rotate_encryption_keys --generate-key`.
  2. Put it first in ENCRYPTION_KEYS, keeping the old ones after it (ENCRYPTION_KEYS=<new>,<old>), and
     restart every process (web, worker, beat): new values are encrypted with it, old ones still open.
     Coming from the default (no ENCRYPTION_KEYS), the old key is the one `--derived-key` prints.
  3. Run `manage.py rotate_encryption_keys`: every value is re-encrypted with the new key. Safe to run
     again, and while the hub runs (each batch of rows is locked while it is rewritten).
  4. `manage.py rotate_encryption_keys --check` exits 0 once no value needs an old key: then remove the old
     key from ENCRYPTION_KEYS and restart. A value no configured key opens is named, never skipped silently.
"""


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted fields, and their names (found, so a new field is covered)."""
    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names and not model._meta.proxy:
            found.append((model, names))
    return found


def label(model, field: str) -> str:
    return f"{model._meta.label}.{field}"


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (integration secret settings, signing secrets, webhook secrets) "
        "with the first key of ENCRYPTION_KEYS; --check counts the values still under an older key."
        + PROCEDURE
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter  # keep the procedure's lines
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Count the values not under the first key (and any no key opens); change nothing. "
            "Exits 1 while any remain.",
        )
        parser.add_argument(
            "--generate-key", action="store_true", help="Print a new key for ENCRYPTION_KEYS and exit."
        )
        parser.add_argument(
            "--derived-key",
            action="store_true",
            help="Print the key derived from SECRET_KEY (the default when ENCRYPTION_KEYS is unset) and exit.",
        )

    def handle(self, *args, **options):
        if options["generate_key"]:
            self.stdout.write(crypto.generate_key())
            return
        if options["derived_key"]:
            from django.conf import settings

            self.stdout.write(crypto.derived_key(settings.SECRET_KEY))
            return
        unopened: list[str] = []
        pending = 0
        for model, fields in encrypted_fields():
            for field in fields:
                if options["check"]:
                    counts = self.check(model, field, unopened)
                    pending += counts["old"]
                    self.stdout.write(
                        f"{label(model, field)}: {counts['values']} value(s), {counts['old']} not under the "
                        f"first key"
                    )
                else:
                    counts = self.rotate(model, field, unopened)
                    self.stdout.write(
                        f"{label(model, field)}: {counts['rotated']} re-encrypted, {counts['current']} "
                        f"already under the first key"
                    )
        if unopened:
            raise CommandError(
                f"{len(unopened)} value(s) no key in ENCRYPTION_KEYS opens: "
                + ", ".join(unopened[:20])
                + (" …" if len(unopened) > 20 else "")
                + ". Add the key they were encrypted with back to ENCRYPTION_KEYS (after the first), then run "
                "this again."
            )
        if options["check"]:
            if pending:
                raise CommandError(
                    f"{pending} value(s) still need an older key: run `manage.py rotate_encryption_keys`."
                )
            self.stdout.write("Every value is under the first key: the older keys can be removed.")
        else:
            self.stdout.write("Done: every value is under the first key of ENCRYPTION_KEYS.")

    def batches(self, model, field):
        """Lists of primary keys of the rows with a value in `field`, BATCH at a time, walking the ids."""
        rows = model.objects.exclude(**{field: ""}).exclude(**{f"{field}__isnull": True})
        after = None
        while True:
            page = rows.order_by("pk")
            if after is not None:
                page = page.filter(pk__gt=after)
            ids = list(page.values_list("pk", flat=True)[:BATCH])
            if not ids:
                return
            after = ids[-1]
            yield ids

    def check(self, model, field, unopened) -> dict:
        counts = {"values": 0, "old": 0}
        for ids in self.batches(model, field):
            for pk, sealed in model.objects.filter(pk__in=ids).values_list("pk", field):
                counts["values"] += 1
                if not crypto.under_primary(sealed.token):
                    counts["old"] += 1
                    if not crypto.opens(sealed.token):
                        unopened.append(f"{label(model, field)} of row {pk}")
        return counts

    def rotate(self, model, field, unopened) -> dict:
        counts = {"rotated": 0, "current": 0}
        expected = model.objects.exclude(**{field: ""}).exclude(**{f"{field}__isnull": True}).count()
        done = 0
        for ids in self.batches(model, field):
            with transaction.atomic():
                # Locked while rewritten: a save in between would otherwise be overwritten by a stale value.
                locked = model.objects.select_for_update().filter(pk__in=ids).values_list("pk", field)
                for pk, sealed in locked:
                    if sealed is None or sealed == "" or sealed == {}:
                        continue  # emptied since the batch was listed
                    if crypto.under_primary(sealed.token):
                        counts["current"] += 1
                        continue
                    try:
                        token = crypto.reencrypt(sealed.token)
                    except crypto.DecryptionError:
                        unopened.append(f"{label(model, field)} of row {pk}")
                        continue
                    # The new token as it is: through the field it would be taken for a plaintext.
                    model.objects.filter(pk=pk).update(
                        **{field: models.Value(token, output_field=models.TextField())}
                    )
                    counts["rotated"] += 1
            done += len(ids)
            if expected > BATCH:
                self.stderr.write(f"{label(model, field)}: {done} of {expected} done…")
        return counts
