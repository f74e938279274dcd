"""
The error shape every answer shares (the connector contract's `{"error": {code, message, details}}`) and the
base of the domain's errors. A service raises a `DomainError` subclass naming its API code; the API layer
translates it in one place (api/errors.py), the admin shows its message.
"""


def error_body(code, message, details=None):
    return {"error": {"code": code, "message": message, "details": details or {}}}
