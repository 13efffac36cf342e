from services.common.keys import dev_keypair


async def test_transfer_lands_in_a_block(client):
    alice, bob = dev_keypair("Alice"), dev_keypair("Bob")
    before = (await client.account(bob.ss58_address)).free
    resp = await client.transfer(alice, bob.ss58_address, 5_000)
    assert resp.status.success, resp.status
    assert (await client.account(bob.ss58_address)).free == before + 5_000
    block = await client.block(resp.status.block_number)
    assert [e.name for e in block.events] == ["FeeBurned", "Transfer", "ExtrinsicSuccess"]
