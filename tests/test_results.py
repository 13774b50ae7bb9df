"""Result storage: signed URLs, safe paths, atomic writes, and downloads of provider outputs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

import httpx
import pytest
import respx

from gateway.errors import ProviderTransientError, ProviderUnavailable
from gateway.netguard import AllowList
from gateway.results import ResultStorage, UrlSigner
from providers.base import Output
from tests.fakes import PNG, png_bytes

JOB = "job-0123456789abcdef01234567"
OTHER_JOB = "job-fedcba9876543210fedcba98"
URL = "https://cdn.provider.example/out/0.png"


# -- UrlSigner --------------------------------------------------------------------------------


def signed(
    signer: UrlSigner, job_id: str = JOB, name: str = "0.png", expires: int = 2_000_000_000
) -> tuple[SplitResult, int, str]:
    """Sign a URL and return its parts, its expiry and its signature as a client sees them."""
    url = signer.url(job_id, name, expires)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts, int(query["expires"][0]), query["sig"][0]


def test_url_has_the_documented_shape() -> None:
    signer = UrlSigner(b"secret", "http://gw.example/")
    parts, expires, sig = signed(signer)
    assert f"{parts.scheme}://{parts.netloc}" == "http://gw.example"
    assert parts.path == f"/files/{JOB}/0.png"
    assert expires == 2_000_000_000
    assert sig


def test_signer_verifies_its_own_urls() -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, sig = signed(signer)
    assert signer.verify(JOB, "0.png", expires, sig) is True


def test_tampered_job_id_is_rejected() -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, sig = signed(signer)
    assert signer.verify(OTHER_JOB, "0.png", expires, sig) is False


def test_tampered_name_is_rejected() -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, sig = signed(signer)
    assert signer.verify(JOB, "1.png", expires, sig) is False


def test_tampered_expiry_is_rejected() -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, sig = signed(signer)
    assert signer.verify(JOB, "0.png", expires + 1, sig) is False
    assert signer.verify(JOB, "0.png", expires * 10, sig) is False


@pytest.mark.parametrize(
    "mutate", [lambda s: s[:-1], lambda s: s + "A", lambda s: s[::-1], str.upper]
)
def test_tampered_signature_is_rejected(mutate: Callable[[str], str]) -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, sig = signed(signer)
    assert mutate(sig) != sig
    assert signer.verify(JOB, "0.png", expires, mutate(sig)) is False


def test_empty_signature_is_rejected() -> None:
    signer = UrlSigner(b"secret", "http://gw.example")
    _, expires, _ = signed(signer)
    assert signer.verify(JOB, "0.png", expires, "") is False


def test_url_from_another_secret_is_rejected_and_rekey_takes_effect() -> None:
    signer = UrlSigner(b"first", "http://gw.example")
    _, expires, sig = signed(signer)
    signer.rekey(b"second")
    assert signer.verify(JOB, "0.png", expires, sig) is False
    _, expires2, sig2 = signed(signer)
    assert signer.verify(JOB, "0.png", expires2, sig2) is True


# -- ResultStorage.path -----------------------------------------------------------------------


#: respx answers for these names; an allow-listed name is connected to by name, not pinned
CDN_ALLOW = AllowList.parse("*.provider.example")


def storage(tmp_path: Path, max_bytes: int = 1_000_000) -> ResultStorage:
    return ResultStorage(tmp_path / "files", max_bytes=max_bytes, allow=CDN_ALLOW)


def test_path_of_a_safe_name_is_under_the_root(tmp_path: Path) -> None:
    s = storage(tmp_path)
    path = s.path(JOB, "0.png")
    assert path == tmp_path / "files" / JOB[4:6] / JOB / "0.png"


@pytest.mark.parametrize(
    "name", ["../secret", "..", "a/b.png", "a\\b.png", ".hidden", "", "x" * 200, "0.png\x00.txt"]
)
def test_path_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    assert storage(tmp_path).path(JOB, name) is None


@pytest.mark.parametrize(
    "job_id",
    ["../../etc", "job-../../etc/passwd0000000", "job-XYZ", "job-", JOB + "0", JOB.upper(), ""],
)
def test_path_refuses_unsafe_job_ids(tmp_path: Path, job_id: str) -> None:
    assert storage(tmp_path).path(job_id, "0.png") is None


# -- ResultStorage.save -----------------------------------------------------------------------


async def test_save_writes_the_bytes_and_describes_the_file(tmp_path: Path) -> None:
    s = storage(tmp_path)
    stored = await s.save(JOB, 0, Output("image/png", data=PNG, width=8, height=6))

    assert (stored.name, stored.content_type, stored.size) == ("0.png", "image/png", len(PNG))
    assert (stored.width, stored.height) == (8, 6)
    path = s.path(JOB, "0.png")
    assert path is not None
    assert path.read_bytes() == PNG
    assert [p.name for p in path.parent.iterdir()] == ["0.png"], "a temporary file was left"


@pytest.mark.parametrize(
    ("content_type", "name"),
    [("image/jpeg", "3.jpg"), ("video/mp4", "3.mp4"), ("image/gif", "3.gif"), ("x/y", "3.bin")],
)
async def test_save_names_file_by_index_and_type(
    tmp_path: Path, content_type: str, name: str
) -> None:
    assert (await storage(tmp_path).save(JOB, 3, Output(content_type, data=b"x"))).name == name


async def test_save_replaces_atomically_and_a_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = storage(tmp_path)
    await s.save(JOB, 0, Output("image/png", data=b"old"))
    path = s.path(JOB, "0.png")
    assert path is not None

    def broken_write(self: Path, data: bytes) -> int:
        with self.open("wb") as f:
            f.write(data[:2])  # a partial write, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", broken_write)
    with pytest.raises(OSError):
        await s.save(JOB, 0, Output("image/png", data=b"new content"))
    monkeypatch.undo()

    assert path.read_bytes() == b"old", "the visible file was written in place"
    await s.save(JOB, 0, Output("image/png", data=b"new content"))
    assert path.read_bytes() == b"new content"


async def test_save_rejects_output_over_the_size_limit(tmp_path: Path) -> None:
    s = storage(tmp_path, max_bytes=10)
    with pytest.raises(ProviderUnavailable):
        await s.save(JOB, 0, Output("image/png", data=b"x" * 11))
    assert not any((tmp_path / "files").rglob("*")) if (tmp_path / "files").exists() else True


async def test_save_of_output_with_no_data_and_no_url_fails(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable):
        await storage(tmp_path).save(JOB, 0, Output("image/png"))


async def test_save_refuses_an_unsafe_job_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await storage(tmp_path).save("job-../../x", 0, Output("image/png", data=PNG))


@respx.mock
async def test_save_downloads_a_url_output(tmp_path: Path) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=PNG, headers={"content-type": "image/webp"})
    )
    s = storage(tmp_path)
    stored = await s.save(JOB, 0, Output("image/png", url=URL))
    assert stored.content_type == "image/webp"  # what the server said it is
    assert stored.name == "0.webp"
    path = s.path(JOB, "0.webp")
    assert path is not None and path.read_bytes() == PNG


@respx.mock(assert_all_called=False)
async def test_save_decodes_a_data_url_output_without_any_request(tmp_path: Path) -> None:
    s = storage(tmp_path)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    stored = await s.save(JOB, 0, Output("image/jpeg", url=url))  # a provider's data: output
    assert (stored.name, stored.content_type, stored.size) == ("0.png", "image/png", len(PNG))
    path = s.path(JOB, "0.png")
    assert path is not None and path.read_bytes() == PNG


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("data:image/png;base64,!!!", "base64"),
        ("data:image/png;base64," + base64.b64encode(b"text").decode(), "image/png"),
        ("data:text/plain,hello", "not media"),
        ("data:;base64," + base64.b64encode(b"x" * 11).decode(), "limit"),
    ],
)
async def test_a_bad_data_url_output_is_the_providers_fault(
    tmp_path: Path, url: str, word: str
) -> None:
    with pytest.raises(ProviderUnavailable, match=word):
        await storage(tmp_path, max_bytes=10).save(JOB, 0, Output("image/png", url=url))


# -- ResultStorage.download -------------------------------------------------------------------


@respx.mock
async def test_download_returns_bytes_and_media_type(tmp_path: Path) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(
            200, content=PNG, headers={"content-type": "image/png; charset=binary"}
        )
    )
    assert await storage(tmp_path).download(URL, "image/jpeg") == (PNG, "image/png")


@respx.mock
async def test_download_without_content_type_assumes_the_expected_one(tmp_path: Path) -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, content=PNG))
    assert await storage(tmp_path).download(URL, "image/png") == (PNG, "image/png")


@respx.mock
@pytest.mark.parametrize(
    "content_type", ["text/html", "application/json", "application/octet-stream"]
)
async def test_download_of_non_media_is_rejected(tmp_path: Path, content_type: str) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=b"<html>", headers={"content-type": content_type})
    )
    with pytest.raises(ProviderUnavailable):
        await storage(tmp_path).download(URL, "image/png")


@respx.mock
async def test_download_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=b"x" * 101, headers={"content-type": "image/png"})
    )
    with pytest.raises(ProviderUnavailable):
        await storage(tmp_path, max_bytes=100).download(URL, "image/png")


@respx.mock
async def test_download_at_the_size_limit_is_accepted(tmp_path: Path) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=b"x" * 100, headers={"content-type": "image/png"})
    )
    data, _ = await storage(tmp_path, max_bytes=100).download(URL, "image/png")
    assert len(data) == 100


@respx.mock
@pytest.mark.parametrize("status", [304, 400, 403, 404, 429, 500, 502, 503])
async def test_download_with_non_2xx_status_is_transient(tmp_path: Path, status: int) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(status, content=PNG, headers={"content-type": "image/png"})
    )
    with pytest.raises(ProviderTransientError):
        await storage(tmp_path).download(URL, "image/png")


@respx.mock
async def test_download_follows_redirects(tmp_path: Path) -> None:
    final = "https://cdn2.provider.example/0.png"
    respx.get(URL).mock(return_value=httpx.Response(302, headers={"location": final}))
    respx.get(final).mock(
        return_value=httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    )
    assert await storage(tmp_path).download(URL, "image/png") == (PNG, "image/png")


@respx.mock
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
async def test_download_network_error_is_transient(tmp_path: Path, error: Exception) -> None:
    respx.get(URL).mock(side_effect=error)
    with pytest.raises(ProviderTransientError):
        await storage(tmp_path).download(URL, "image/png")


async def test_an_image_saved_without_its_size_gets_it_from_the_file(tmp_path: Path) -> None:
    storage = ResultStorage(tmp_path, max_bytes=1_000_000)
    unsized = Output(content_type="image/png", data=png_bytes(7, 5))  # as Replicate's are

    stored = await storage.save("job-" + "a" * 24, 0, unsized)

    assert (stored.width, stored.height) == (7, 5)


async def test_a_size_the_provider_gave_is_kept_and_non_images_have_none(tmp_path: Path) -> None:
    storage = ResultStorage(tmp_path, max_bytes=1_000_000)
    sized = Output(content_type="image/png", data=png_bytes(7, 5), width=70, height=50)
    video = Output(content_type="video/mp4", data=b"\x00\x00\x00\x18ftypmp42")
    broken = Output(content_type="image/png", data=b"\x89PNG\r\n\x1a\nnot really")

    job = "job-" + "b" * 24
    kept, clip, bad = [await storage.save(job, i, o) for i, o in enumerate((sized, video, broken))]

    assert (kept.width, kept.height) == (70, 50)
    assert (clip.width, clip.height) == (None, None)
    assert (bad.width, bad.height) == (None, None)
