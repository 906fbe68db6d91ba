"""The console's destination form: one plain HTML form for both kinds of destination.

The form shows the fields of a DICOM (C-STORE) destination and those of a DICOMweb (STOW-RS)
destination side by side (a script may hide the ones not chosen, but the page works without
it); :func:`destination_body` keeps only the fields of the chosen ``type`` (and, for DICOMweb,
of the chosen authentication) and turns them into the YAML's shape, which
:func:`gateway.config.edits.put_destination` stores through the live configuration like the
API's ``PUT /api/v1/config/destinations/NAME``: the settings models validate it, a refusal
stores nothing.  :func:`destination_form` goes the other way, to edit a destination.

Secrets never pass through the form: the models take the *files* that hold a password, token
or client secret, and the form and the destination list show those paths only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gateway.config.pipeline import DICOMWEB_AUTHENTICATION_NEEDS, DICOMWEB_AUTHENTICATION_OPTIONAL

#: What a checked checkbox sends.
CHECKED = "true"


class DestinationForm(BaseModel):
    """The fields of the form, as submitted (text; empty: not given)."""

    name: str = ""
    type: str = "dicom"
    # DICOM (C-STORE)
    ae_title: str = ""
    host: str = ""
    port: str = ""
    calling_ae_title: str = ""
    timeout_seconds: str = ""
    tls_enabled: str = ""
    tls_skip_verify: str = ""
    tls_minimum_version: str = ""
    tls_ca_certificates: str = ""
    tls_certificate: str = ""
    tls_private_key: str = ""
    # DICOMweb (STOW-RS)
    web_base_url: str = ""
    web_timeout_seconds: str = ""
    web_max_instances_per_request: str = ""
    web_tls_skip_verify: str = ""
    web_tls_ca_certificates: str = ""
    web_tls_certificate: str = ""
    web_tls_private_key: str = ""
    auth_type: str = "none"
    auth_username: str = ""
    auth_password_file: str = ""
    auth_token_file: str = ""
    auth_token_url: str = ""
    auth_client_id: str = ""
    auth_client_secret_file: str = ""
    auth_scope: str = ""
    auth_client_authentication: str = ""


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the fields left empty (the model's defaults apply)."""
    stripped = {key: value.strip() if isinstance(value, str) else value for key, value in values.items()}
    return {key: value for key, value in stripped.items() if value != ""}


def _checked(value: str) -> bool:
    return value.strip().lower() in (CHECKED, "on", "1", "yes")


def authentication_keys(kind: str) -> tuple[str, ...]:
    """The keys of ``authentication`` the given type takes (none for an unknown type: the model names it)."""
    return DICOMWEB_AUTHENTICATION_NEEDS.get(kind, ()) + DICOMWEB_AUTHENTICATION_OPTIONAL.get(kind, ())


def destination_body(form: DestinationForm) -> dict[str, Any]:
    """The destination in the YAML's shape, from the fields of its ``type`` only."""
    kind = form.type.strip()
    if kind == "dicomweb":
        auth_type = form.auth_type.strip() or "none"
        authentication = {"type": auth_type} | _given(
            {key: getattr(form, f"auth_{key}", "").strip() for key in authentication_keys(auth_type)}
        )
        tls = {"verify": not _checked(form.web_tls_skip_verify)} | _given(
            {
                "ca_certificates": form.web_tls_ca_certificates,
                "certificate": form.web_tls_certificate,
                "private_key": form.web_tls_private_key,
            }
        )
        return {"type": "dicomweb"} | _given(
            {
                "base_url": form.web_base_url,
                "authentication": authentication,
                "tls": tls,
                "timeout_seconds": form.web_timeout_seconds,
                "max_instances_per_request": form.web_max_instances_per_request,
            }
        )
    if kind != "dicom":
        return {"type": kind}  # refused by the models, naming the types there are
    tls = {"enabled": _checked(form.tls_enabled), "verify": not _checked(form.tls_skip_verify)} | _given(
        {
            "minimum_version": form.tls_minimum_version,
            "ca_certificates": form.tls_ca_certificates,
            "certificate": form.tls_certificate,
            "private_key": form.tls_private_key,
        }
    )
    return _given(
        {
            "ae_title": form.ae_title,
            "host": form.host,
            "port": form.port,
            "calling_ae_title": form.calling_ae_title,
            "timeout_seconds": form.timeout_seconds,
            "tls": tls,
        }
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return CHECKED if value else ""
    return str(value)


def destination_form(name: str, item: Mapping[str, Any]) -> DestinationForm:
    """The form filled in with destination ``name`` as the live configuration's document holds it."""
    tls = item.get("tls") or {}
    if item.get("type") == "dicomweb":
        authentication = item.get("authentication") or {}
        auth_keys = sorted({key for kind in DICOMWEB_AUTHENTICATION_NEEDS for key in authentication_keys(kind)})
        values = {
            "web_base_url": item.get("base_url"),
            "web_timeout_seconds": item.get("timeout_seconds"),
            "web_max_instances_per_request": item.get("max_instances_per_request"),
            "web_tls_skip_verify": tls.get("verify") is False,
            "web_tls_ca_certificates": tls.get("ca_certificates"),
            "web_tls_certificate": tls.get("certificate"),
            "web_tls_private_key": tls.get("private_key"),
            "auth_type": authentication.get("type") or "none",
        } | {f"auth_{key}": authentication.get(key) for key in auth_keys}
    else:
        values = {
            "ae_title": item.get("ae_title"),
            "host": item.get("host"),
            "port": item.get("port"),
            "calling_ae_title": item.get("calling_ae_title"),
            "timeout_seconds": item.get("timeout_seconds"),
            "tls_enabled": bool(tls.get("enabled")),
            "tls_skip_verify": tls.get("verify") is False,
            "tls_minimum_version": tls.get("minimum_version"),
            "tls_ca_certificates": tls.get("ca_certificates"),
            "tls_certificate": tls.get("certificate"),
            "tls_private_key": tls.get("private_key"),
        }
    kind = "dicomweb" if item.get("type") == "dicomweb" else "dicom"
    return DestinationForm.model_validate(
        {"name": name, "type": kind} | {key: _text(value) for key, value in values.items()}
    )
