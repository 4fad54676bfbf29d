"""Encrypted blobs: AES-256-GCM round trip, wrong key, changed bytes, key rotation."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select, update

from portal import storage
from portal.extensions import db
from portal.storage import Blob, BlobError


def test_round_trip_stores_only_ciphertext(ctx):
    content = b"%PDF-1.7 refund authorization for order 4711" * 20
    blob_id = storage.put(content, kind="source_pdf")
    db.session.commit()
    row = db.session.get(Blob, blob_id)
    assert content[:20] not in row.ciphertext
    assert len(row.nonce) == 12 and row.size == len(content)
    assert storage.get(blob_id) == content


def test_each_blob_gets_its_own_nonce(ctx):
    ids = [storage.put(b"same bytes", kind="x") for _ in range(5)]
    db.session.commit()
    nonces = {db.session.get(Blob, i).nonce for i in ids}
    assert len(nonces) == 5


def test_wrong_key_fails_loudly(ctx):
    blob_id = storage.put(b"secret", kind="x")
    db.session.commit()
    ctx.config["DATA_KEY"] = os.urandom(32)
    with pytest.raises(BlobError, match="DATA_KEY is wrong or the stored bytes were changed"):
        storage.get(blob_id)


def test_one_flipped_byte_fails_loudly(ctx):
    blob_id = storage.put(b"signed refund authorization", kind="x")
    db.session.commit()
    row = db.session.get(Blob, blob_id)
    flipped = bytearray(row.ciphertext)
    flipped[3] ^= 0x01
    db.session.execute(update(Blob).where(Blob.id == blob_id).values(ciphertext=bytes(flipped)))
    db.session.commit()
    db.session.expire_all()
    with pytest.raises(BlobError, match=blob_id):
        storage.get(blob_id)


def test_ciphertext_moved_to_another_blob_id_does_not_decrypt(ctx):
    first = storage.put(b"first", kind="x")
    second = storage.put(b"second", kind="x")
    db.session.commit()
    a = db.session.get(Blob, first)
    db.session.execute(
        update(Blob).where(Blob.id == second).values(nonce=a.nonce, ciphertext=a.ciphertext)
    )
    db.session.commit()
    db.session.expire_all()
    with pytest.raises(BlobError):
        storage.get(second)


def test_missing_blob_is_reported(ctx):
    with pytest.raises(BlobError, match="does not exist"):
        storage.get("0" * 32)


def test_rotation_re_encrypts_every_blob_under_the_new_key(ctx, runner_for):
    old_key = ctx.config["DATA_KEY"]
    ids = [storage.put(f"document {n}".encode(), kind="x") for n in range(7)]
    db.session.commit()
    new_key = os.urandom(32)
    ctx.config["DATA_KEY"] = new_key
    result = runner_for(ctx).invoke(args=["portal", "rotate-data-key", "--old-key", old_key.hex()])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 7 blobs" in result.output
    db.session.expire_all()
    assert [storage.get(i) for i in ids] == [f"document {n}".encode() for n in range(7)]
    key_ids = set(db.session.execute(select(Blob.key_id)).scalars())
    assert key_ids == {storage.key_fingerprint(new_key)}
    ctx.config["DATA_KEY"] = old_key
    with pytest.raises(BlobError):
        storage.get(ids[0])


def test_rotation_with_a_wrong_old_key_changes_nothing(ctx, runner_for):
    blob_id = storage.put(b"keep me", kind="x")
    db.session.commit()
    before = db.session.get(Blob, blob_id).ciphertext
    current = ctx.config["DATA_KEY"]
    ctx.config["DATA_KEY"] = os.urandom(32)
    result = runner_for(ctx).invoke(
        args=["portal", "rotate-data-key", "--old-key", os.urandom(32).hex()]
    )
    # nothing is sealed under that "old" key: nothing is touched, and the blobs under the
    # real old key are reported as still pending
    assert result.exit_code == 1
    db.session.expire_all()
    assert db.session.get(Blob, blob_id).ciphertext == before
    ctx.config["DATA_KEY"] = current
    assert storage.get(blob_id) == b"keep me"
