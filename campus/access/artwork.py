"""The images of access: a person's pass-code card and a place's printable poster (PNG).

Chinese text needs a CJK font. The first one found among the usual places (Noto Sans CJK:
Debian `fonts-noto-cjk`; WenQuanYi: `fonts-wqy-zenhei`; macOS and Windows system fonts) or
in HEALTHBOT_FONT_FILE is used. Without one, Pillow's built-in font draws the Latin text and
Chinese characters come out as boxes; the QR code, which is what gets scanned, is unaffected.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M

log = logging.getLogger(__name__)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Renders run in worker threads (asyncio.to_thread); FreeType faces are shared and are not
# meant for concurrent use, so one image is drawn at a time.
_DRAWING = threading.Lock()

STATUS_COLOURS = {"green": (26, 173, 25), "yellow": (245, 176, 0), "red": (230, 67, 64)}
INK = (34, 34, 34)
MUTED = (110, 110, 110)
POSTER_BAND = (0, 122, 110)
WHITE = (255, 255, 255)

_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
_GLOBS = ("/usr/share/fonts/**/*CJK*.tt[cf]", "/usr/share/fonts/**/*wqy*.tt[cf]")


@cache
def cjk_font_file() -> tuple[str, int] | None:
    """(path, face index) of a font with Chinese glyphs, or None."""
    paths = [os.environ.get("HEALTHBOT_FONT_FILE", ""), *_CANDIDATES]
    for pattern in _GLOBS:
        paths.extend(sorted(glob.glob(pattern, recursive=True)))
    for path in paths:
        if not path or not os.path.isfile(path):
            continue
        index = _simplified_chinese_face(path)
        if index is not None:
            return path, index
    log.warning(
        "no CJK font found: Chinese text on pass cards and posters will not render "
        "(install fonts-noto-cjk or set HEALTHBOT_FONT_FILE)"
    )
    return None


def _simplified_chinese_face(path: str) -> int | None:
    """A collection holds several faces (JP, KR, SC, TC…): prefer the SC one."""
    first: int | None = None
    for index in range(10):
        try:
            font = ImageFont.truetype(path, 20, index=index)
        except OSError:
            break
        if first is None:
            first = index
        family = " ".join(part or "" for part in font.getname())
        if " SC" in family or "GB" in family or "Hei" in family:
            return index
    return first


@cache
def font(size: int) -> Font:
    found = cjk_font_file()
    if found is not None:
        return ImageFont.truetype(found[0], size, index=found[1])
    return ImageFont.load_default(size)


def qr_image(text: str, box: int, border: int = 4) -> Image.Image:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box, border=border)
    code.add_data(text)
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image().convert("RGB")


def _width(draw: ImageDraw.ImageDraw, text: str, face: Font) -> float:
    return draw.textlength(text, font=face)


def wrap(draw: ImageDraw.ImageDraw, text: str, face: Font, width: float) -> list[str]:
    """Lines no wider than `width`: breaks at spaces, or between characters (CJK)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for token in _tokens(paragraph):
            candidate = line + token
            if line and _width(draw, candidate.rstrip(), face) > width:
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line = candidate
        lines.append(line.rstrip())
    return lines


def _tokens(text: str) -> list[str]:
    """Words with their trailing space for Latin text; single characters for CJK."""
    tokens: list[str] = []
    word = ""
    for char in text:
        if ord(char) > 0x2E80:
            if word:
                tokens.append(word)
                word = ""
            tokens.append(char)
        elif char == " ":
            tokens.append(word + " ")
            word = ""
        else:
            word += char
    if word:
        tokens.append(word)
    return tokens


def _centred(
    draw: ImageDraw.ImageDraw, y: float, text: str, face: Font, fill: tuple[int, int, int], w: int
) -> float:
    """Draw text centred at height y; the y below it."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    draw.text(((w - (right - left)) / 2 - left, y - top), text, font=face, fill=fill)
    return y + (bottom - top)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class CardText:
    status_label: str  # 绿码 / Green
    name: str  # masked
    lines: Sequence[str]  # issued at, valid until …


def render_pass_card(token: str, status: str, text: CardText) -> bytes:
    """The pass code: the QR framed in the status colour, with the masked name and times."""
    with _DRAWING:
        return _pass_card(token, status, text)


def _pass_card(token: str, status: str, text: CardText) -> bytes:
    colour = STATUS_COLOURS[status]
    qr = qr_image(token, box=8)
    frame, pad = 28, 24
    width = max(qr.width + 2 * (frame + pad), 560)
    title_face, name_face, line_face = font(52), font(40), font(28)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = int(probe.textbbox((0, 0), "国Ag", font=line_face)[3]) + 12
    height = frame + pad + 70 + 60 + 16 + qr.height + 16 + line_height * len(text.lines) + pad
    height += frame
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((frame, frame, width - frame, height - frame), radius=18, fill=WHITE)
    y = float(frame + pad)
    y = _centred(draw, y, text.status_label, title_face, colour, width) + 18
    y = _centred(draw, y, text.name, name_face, INK, width) + 16
    image.paste(qr, ((width - qr.width) // 2, int(y)))
    y += qr.height + 16
    for line in text.lines:
        _centred(draw, y, line, line_face, MUTED, width)
        y += line_height
    return _png(image)


@dataclass(frozen=True, slots=True)
class PosterText:
    title: str  # the place name
    header: str  # 健康校园 Healthy Campus
    instructions: Sequence[str]  # one paragraph per language
    footer: str  # the place code


def render_poster(qr_text: str, text: PosterText) -> bytes:
    """A printable A4 poster (150 dpi): the place name, its QR code, instructions."""
    with _DRAWING:
        return _poster(qr_text, text)


def _poster(qr_text: str, text: PosterText) -> bytes:
    width, height = 1240, 1754
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    band = 150
    draw.rectangle((0, 0, width, band), fill=POSTER_BAND)
    _centred(draw, 45, text.header, font(56), WHITE, width)
    y = float(band + 60)
    title_face = font(84)
    for line in wrap(draw, text.title, title_face, width - 160):
        y = _centred(draw, y, line, title_face, INK, width) + 20
    qr = qr_image(qr_text, box=1, border=4)
    scale = max(1, 760 // qr.width)
    qr = qr.resize((qr.width * scale, qr.height * scale), Image.Resampling.NEAREST)
    y += 30
    image.paste(qr, ((width - qr.width) // 2, int(y)))
    draw.rectangle(
        (
            (width - qr.width) // 2 - 6,
            int(y) - 6,
            (width + qr.width) // 2 + 6,
            int(y) + qr.height + 6,
        ),
        outline=POSTER_BAND,
        width=6,
    )
    y += qr.height + 50
    body = font(40)
    for paragraph in text.instructions:
        for line in wrap(draw, paragraph, body, width - 200):
            y = _centred(draw, y, line, body, INK, width) + 14
        y += 26
    _centred(draw, height - 80, text.footer, font(30), MUTED, width)
    return _png(image)
