"""The Amazon RDS CA bundle shipped in the layer (scripts/rds_ca_bundle.py, `make rds-ca`)."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509

from tests.sessions.tls import write_tls_files
from tests.tooling.conftest import load_script

# Regions whose databases the bundle must cover with a current (G1) root, each key type.
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "ap-northeast-1")


@pytest.fixture(scope="module")
def rds_ca_bundle() -> ModuleType:
    return load_script("rds_ca_bundle")


def shipped(repo_root: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((repo_root / "layers/accessctl/accessctl/rds-ca.pem").read_bytes())


def test_the_shipped_bundle_holds_only_amazon_rds_authorities_that_chain_within_it(
    rds_ca_bundle: ModuleType, repo_root: Path
) -> None:
    certificates = shipped(repo_root)

    rds_ca_bundle.check_rds_authorities(certificates)  # raises on anything else
    assert len(certificates) == 115


def test_the_shipped_bundle_has_a_current_root_of_each_kind_for_the_main_regions(repo_root: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    current = {
        certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        for certificate in shipped(repo_root)
        if certificate.not_valid_after_utc > now and certificate.issuer == certificate.subject
    }

    for region in REGIONS:
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            assert f"Amazon RDS {region} Root CA {kind} G1" in current


def test_the_package_source_is_read_as_the_certificates_it_spells_out(
    rds_ca_bundle: ModuleType, repo_root: Path
) -> None:
    # Given defaults.js as the package writes it: each certificate a concatenation of quoted lines
    first, second = (
        (repo_root / "layers/accessctl/accessctl/rds-ca.pem").read_text().split("-----END CERTIFICATE-----\n")[:2]
    )
    pems = [first + "-----END CERTIFICATE-----\n", second + "-----END CERTIFICATE-----\n"]
    source = (
        "exports.defaults = [\n"
        + ",\n".join(" +\n".join(f"    '{line}\\n'" for line in pem.splitlines()) for pem in pems)
        + "\n];\n"
    )

    # Then the PEM blocks come back exactly
    assert rds_ca_bundle.pem_blocks(source) == pems


def test_a_certificate_that_is_not_an_rds_authority_is_refused(
    rds_ca_bundle: ModuleType, repo_root: Path, tmp_path: Path
) -> None:
    ca, _, _ = write_tls_files(tmp_path)
    stranger = x509.load_pem_x509_certificate(ca.read_bytes())

    with pytest.raises(rds_ca_bundle.BundleError, match="not an Amazon RDS certificate"):
        rds_ca_bundle.check_rds_authorities([*shipped(repo_root)[:3], stranger])
