"""Writes country-test.mmdb, the GeoIP fixture of the country-rule tests.

A MaxMind-format country database with made-up assignments in the
documentation ranges (RFC 5737 / RFC 3849), so no real GeoIP data is
shipped: 192.0.2.0/24 -> FR, 198.51.100.0/24 -> DE, 2001:db8::/32 -> US.

    python3 -m venv venv && venv/bin/pip install mmdb-writer==0.2.7
    venv/bin/python make_country_test_mmdb.py
"""

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

writer = MMDBWriter(
    ip_version=6,
    ipv4_compatible=True,
    database_type="relaycast-Country-Test",
    languages=["en"],
    description="relaycast test fixture (documentation ranges only)",
)
for network, iso in [
    ("192.0.2.0/24", "FR"),
    ("198.51.100.0/24", "DE"),
    ("2001:db8::/32", "US"),
]:
    writer.insert_network(IPSet([network]), {"country": {"iso_code": iso}})
writer.to_db_file(str(Path(__file__).with_name("country-test.mmdb")))
