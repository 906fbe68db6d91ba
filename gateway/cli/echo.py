"""``gazex echo HOST PORT AET``: C-ECHO a DICOM node (optionally over TLS) to test connectivity."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gateway.cli import CommandError
from gateway.dicom.echo import echo
from gateway.dicom.tls import TLSConfigError, client_context


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "echo", help="send a C-ECHO to HOST PORT AET and report the result (exit 0 on success)"
    )
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("port", type=int, metavar="PORT")
    parser.add_argument("ae_title", metavar="AET", help="the called AE title")
    parser.add_argument("--calling-ae", default="GAZEX", metavar="AET", help="our (calling) AE title (default GAZEX)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="ACSE/DIMSE/network timeout")
    tls = parser.add_argument_group("DICOM TLS")
    tls.add_argument("--tls", action="store_true", help="connect with TLS 1.2 or newer")
    tls.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="PEM CA file to verify the server (default: system CAs)"
    )
    tls.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM client certificate, for mutual TLS")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument("--tls-no-verify", action="store_true", help="do not verify the server's certificate")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together: give both for mutual TLS, or neither")
    uses_tls_options = args.tls_ca or args.tls_cert or args.tls_no_verify
    if uses_tls_options and not args.tls:
        raise CommandError("--tls-ca, --tls-cert, --tls-key and --tls-no-verify need --tls")
    context = None
    if args.tls:
        try:
            context = client_context(
                ca_certificates=args.tls_ca,
                certificate=args.tls_cert,
                private_key=args.tls_key,
                verify=not args.tls_no_verify,
            )
        except TLSConfigError as exc:
            raise CommandError(str(exc)) from None
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    result = echo(
        args.host, args.port, args.ae_title, calling_ae_title=args.calling_ae, timeout=args.timeout, tls=context
    )
    target = f"{args.ae_title}@{args.host}:{args.port}{' (TLS)' if args.tls else ''}"
    print(f"C-ECHO {target}: {result.message} in {result.seconds * 1000:.0f} ms")
    return 0 if result.ok else 1
