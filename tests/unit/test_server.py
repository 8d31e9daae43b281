from pathlib import Path

import pytest

from fhvlab.errors import BadInput
from fhvlab.local.server import ServerSpec, parse_api_url, parse_port


def test_serves_recognises_its_own_api_under_any_loopback_name():
    spec = ServerSpec("127.0.0.1", 4300, Path("/tmp/home"))
    assert spec.serves("http://127.0.0.1:4300/api")
    assert spec.serves("http://localhost:4300/api")
    assert not spec.serves("http://127.0.0.1:4200/api")
    assert not spec.serves("http://10.1.2.3:4300/api")


def test_a_server_on_all_interfaces_is_called_on_loopback():
    spec = ServerSpec("0.0.0.0", 4200, Path("/tmp/home"))
    assert spec.api_url == "http://127.0.0.1:4200/api"
    assert spec.serves("http://localhost:4200/api")


@pytest.mark.parametrize("text", ["abc", "0", "70000", "42.0", ""])
def test_parse_port_rejects_what_is_not_a_port(text):
    with pytest.raises(BadInput, match="not a port number"):
        parse_port(text)


def test_parse_api_url_accepts_a_prefect_api_and_rejects_the_rest():
    assert parse_api_url("http://1.2.3.4:4200/api/") == "http://1.2.3.4:4200/api"
    for bad in ("not-a-url", "ftp://h/api", "http://h:99999/api"):
        with pytest.raises(BadInput, match="is not a URL of a Prefect API"):
            parse_api_url(bad)
    with pytest.raises(BadInput, match="must end in /api"):
        parse_api_url("http://127.0.0.1:4200")


def test_the_server_keeps_concurrency_leases_on_disk(tmp_path):
    from fhvlab.local.server import server_env

    env = server_env(ServerSpec("127.0.0.1", 4300, tmp_path), None)
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == (
        "prefect.server.concurrency.lease_storage.filesystem"
    )
    assert float(env["PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"]) <= 10
