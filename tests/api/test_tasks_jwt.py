"""The Tasks API's JWT checks (gateway/api/tasks/jwt.py): ``exp`` is required, every part
is strict, canonical base64url, ``nbf`` and ``exp`` hold with the leeway, ``alg`` is exact."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.api.tasks.jwt import Claims, JWTVerifier, TokenRejected
from tests.api.tasks_support import SECRET, assert_detail, tasks_server, token

NOW = 1_800_000_000.0
#: claims whose JSON is not a multiple of 3 bytes long: their base64url needs padding, and
#: its last character carries spare bits (the tests check it)
CLAIMS = {"sub": "alice", "exp": NOW + 600, "pad": "xx"}


def verifier(**options: Any) -> JWTVerifier:
    return JWTVerifier(SECRET, clock=lambda: NOW, **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(head: str, body: str) -> str:
    """``head.body`` and its valid signature, whatever the two parts look like."""
    mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def parts(claims: dict[str, Any] = CLAIMS) -> tuple[str, str, str]:
    head, body, signature = token(claims).split(".")
    return head, body, signature


def twin(part: str) -> str:
    """``part`` with its last character's spare (zero) bits set: the same bytes for a lenient
    decoder, but not the canonical spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return part[:-1] + alphabet[alphabet.index(part[-1]) | 1]


def rejected(token_: str, **options: Any) -> str:
    with pytest.raises(TokenRejected) as caught:
        verifier(**options).verify(token_)
    assert caught.value.status_code == 401
    return caught.value.message


def test_a_well_formed_token_is_accepted() -> None:
    assert verifier().verify(token(CLAIMS)) == Claims(sub="alice")


def test_a_token_without_exp_is_refused_unless_the_operator_allows_it() -> None:
    forever = token({"sub": "alice"})

    assert "token has no exp claim" in rejected(forever)
    assert verifier(require_exp=False).verify(forever).sub == "alice"


@pytest.mark.parametrize("suffix", ["=", "==", "!!", "*", " "])
def test_a_signature_with_trailing_characters_is_refused(suffix: str) -> None:
    head, body, signature = parts()
    message = rejected(f"{head}.{body}.{signature}{suffix}")
    assert "signature is not unpadded, canonical base64url" in message


def test_a_signature_with_a_non_canonical_last_character_is_refused() -> None:
    head, body, signature = parts()
    assert twin(signature) != signature
    assert base64.urlsafe_b64decode(twin(signature) + "=") == base64.urlsafe_b64decode(
        signature + "="
    )  # the same bytes: only a strict decoder tells them apart

    assert "signature is not unpadded" in rejected(f"{head}.{body}.{twin(signature)}")


def test_a_signature_in_the_standard_alphabet_is_refused() -> None:
    for n in range(100):  # claims whose signature has a '-' or '_', to spell with '+' or '/'
        head, body, signature = parts({**CLAIMS, "n": n})
        if "-" in signature or "_" in signature:
            break
    standard = signature.replace("-", "+").replace("_", "/")

    assert "signature is not unpadded" in rejected(f"{head}.{body}.{standard}")


def test_padding_in_the_payload_is_refused_even_when_signed() -> None:
    head, body, _ = parts()
    padded = body + "=" * (-len(body) % 4)
    assert padded != body

    assert "payload is not JSON encoded as unpadded, canonical" in rejected(signed(head, padded))


def test_a_payload_with_a_non_canonical_last_character_is_refused_even_when_signed() -> None:
    head, body, _ = parts()
    assert twin(body) != body

    assert "payload is not JSON encoded" in rejected(signed(head, twin(body)))


def test_a_padded_header_is_refused_even_when_signed() -> None:
    head = b64(json.dumps({"alg": "HS256"}).encode())  # 16 bytes: 22 characters, unpadded
    padded = head + "=" * (-len(head) % 4)
    assert padded != head

    assert "header is not JSON encoded" in rejected(signed(padded, parts()[1]))


def test_nbf_is_honoured_with_the_leeway() -> None:
    assert "not valid yet" in rejected(token({**CLAIMS, "nbf": NOW + 60}), leeway=30)
    assert verifier(leeway=30).verify(token({**CLAIMS, "nbf": NOW + 20})).sub == "alice"


def test_exp_in_the_past_is_refused_beyond_the_leeway() -> None:
    assert "expired" in rejected(token({**CLAIMS, "exp": NOW - 60}), leeway=30)
    assert verifier(leeway=30).verify(token({**CLAIMS, "exp": NOW - 20})).sub == "alice"


@pytest.mark.parametrize("alg", ["hs256", "HS256 ", "HS384", "none", None])
def test_alg_must_be_exactly_hs256(alg: str | None) -> None:
    assert "algorithm" in rejected(token(CLAIMS, header={"alg": alg, "typ": "JWT"}))


async def test_a_token_without_exp_is_a_401_saying_so(tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {token({'sub': 'alice'})}"}
    async with tasks_server(tmp_path, start_scheduler=False) as server:
        resp = await server.client.get("/api/v1/tasks/", headers=headers)
        assert "token has no exp claim" in assert_detail(resp, 401)
    async with tasks_server(
        tmp_path / "lenient", start_scheduler=False, tasks_jwt_allow_no_exp=True
    ) as server:
        assert (await server.client.get("/api/v1/tasks/", headers=headers)).status_code == 200
