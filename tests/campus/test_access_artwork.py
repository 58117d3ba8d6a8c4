"""The pass-code card and the place poster: they render, and their QR codes read back."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image, ImageDraw

from campus.access import artwork
from campus.access import token as tk
from tests.access_support import decode_qr


def _token(status: str) -> str:
    key = Ed25519PrivateKey.generate()
    claims = tk.PassClaims(
        tk.key_id_for(key.public_key()), 1234, status, 1_800_000_000, 1_800_000_600
    )
    return tk.sign(claims, key, "wxtest")


@pytest.mark.parametrize("status", ["green", "yellow", "red"])
def test_the_card_is_framed_in_the_status_colour_and_reads_back(status: str) -> None:
    token = _token(status)
    png = artwork.render_pass_card(
        token,
        status,
        artwork.CardText("绿码", "张*丰", ["生成于 2027-01-15 08:00", "有效至 08:10"]),
    )
    assert decode_qr(png) == token
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        assert rgb.getpixel((3, 3)) == artwork.STATUS_COLOURS[status]
        assert rgb.getpixel((rgb.width - 4, rgb.height - 4)) == artwork.STATUS_COLOURS[status]
    assert len(png) < 200_000  # far below WeChat's image limit


def test_the_poster_reads_back_to_the_wechat_url() -> None:
    url = "http://weixin.qq.com/q/02AbCdEfGhIjKlMnOpQrStUv"
    text = artwork.PosterText(
        title="学生公寓1号楼 Dorm 1",
        header="健康校园 Healthy Campus",
        instructions=("请用微信扫一扫此码。" * 4, "Scan this code with WeChat to check in. " * 3),
        footer="DORM-1",
    )
    png = artwork.render_poster(url, text)
    assert decode_qr(png) == url
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1240, 1754)  # A4 at 150 dpi


@pytest.fixture
def no_cjk_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    artwork.font.cache_clear()
    monkeypatch.setattr(artwork, "cjk_font_file", lambda: None)
    yield
    artwork.font.cache_clear()


@pytest.mark.usefixtures("no_cjk_font")
def test_without_a_cjk_font_the_images_still_work() -> None:
    token = _token("green")
    png = artwork.render_pass_card(token, "green", artwork.CardText("Green", "张*", ["x"]))
    assert decode_qr(png) == token
    poster = artwork.render_poster(
        "http://weixin.qq.com/q/x", artwork.PosterText("北门", "Healthy Campus", ("扫码",), "G")
    )
    assert decode_qr(poster) == "http://weixin.qq.com/q/x"


def test_wrapping_breaks_words_and_chinese() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    face = artwork.font(20)
    latin = artwork.wrap(draw, "one two three four five six seven", face, 100)
    assert len(latin) > 1 and all(draw.textlength(line, font=face) <= 100 for line in latin)
    assert " ".join(latin) == "one two three four five six seven"
    chinese = artwork.wrap(draw, "用微信扫一扫此码登记进入立即显示能否进入", face, 100)
    assert len(chinese) > 1 and "".join(chinese) == "用微信扫一扫此码登记进入立即显示能否进入"
