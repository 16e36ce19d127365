"""The client pool: one client per place and identity, bounded, closed when idle or at shutdown."""

from __future__ import annotations

import pytest
from certauto_acm.auth import CredentialSource, StaticKeys
from certauto_acm.clients import ClientPool


def keys(number: int) -> CredentialSource:
    return CredentialSource(
        description=f"Secret ns/aws-{number} (keys accessKeyID, secretAccessKey)",
        keys=StaticKeys(f"AKIA{number:016d}", f"secret-{number}"),
    )


async def test_one_client_per_region_endpoint_and_credentials() -> None:
    pool = ClientPool(user_agent="test")
    try:
        async with (
            pool.acm(
                region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(1)
            ) as first,
            pool.acm(
                region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(1)
            ) as again,
        ):
            assert again is first
        async with pool.acm(
            region="eu-west-1", endpoint_url=None, sts_endpoint_url=None, source=keys(1)
        ) as other_region:
            assert other_region is not first
        async with pool.acm(
            region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(2)
        ) as other_keys:
            assert other_keys is not first
        assert pool.size == 3
    finally:
        await pool.aclose()
    assert pool.size == 0


async def test_the_cache_is_bounded_and_keeps_a_client_in_use_open() -> None:
    pool = ClientPool(user_agent="test", max_clients=1)
    try:
        async with pool.acm(
            region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(1)
        ) as in_use:
            async with pool.acm(
                region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(2)
            ):
                assert pool.size == 1
            # Evicted while leased: still usable until the lease ends.
            assert in_use.meta.region_name == "us-east-1"
        assert pool.size == 1
    finally:
        await pool.aclose()


async def test_a_closed_pool_lends_nothing() -> None:
    pool = ClientPool(user_agent="test")
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        async with pool.acm(
            region="us-east-1", endpoint_url=None, sts_endpoint_url=None, source=keys(1)
        ):
            pass


def test_credential_digests_differ_and_hide_the_keys() -> None:
    assert keys(1).cache_key() != keys(2).cache_key()
    assert "secret-1" not in repr(keys(1))
    assert "AKIA" not in repr(keys(1))
