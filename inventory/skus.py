"""
The one rule for SKUs as text (#14, finding 10e). A SKU is stored NFC-normalised with Unicode format
characters (category Cf: zero-width space and joiners, word joiner, BOM, soft hyphen…) removed, so that
"café-1" typed composed or decomposed, or with an invisible character inside, is one SKU. Lookups read an
incoming SKU the same way.

A SKU whose compatibility form (NFKC: full-width "ＳＫＵ１" is "SKU1", the ligature "ﬁ" is "fi") is that of
another SKU of the organization is a look-alike, and refused where products are created: two products a
person cannot tell apart. Case is not folded: SKUs have always been case-sensitive here, and catalogs that use
"ab-1" and "AB-1" for different items stay valid.
"""

import unicodedata


def normalize_sku(value: str) -> str:
    """The SKU as stored and looked up: NFC, without format (Cf) characters."""
    visible = "".join(char for char in value if unicodedata.category(char) != "Cf")
    return unicodedata.normalize("NFC", visible)


def lookalike_key(value: str) -> str:
    """Equal for SKUs a person cannot tell apart (Product.sku_key, unique per organization)."""
    return unicodedata.normalize("NFKC", normalize_sku(value))


def lookalike_message(existing: str) -> str:
    return (
        f"Looks like the existing SKU {existing!r} (the same once full-width and other compatibility "
        "characters are read as their plain forms): use that SKU, or one that differs visibly."
    )
