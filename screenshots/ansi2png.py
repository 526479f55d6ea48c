#!/usr/bin/env python3
"""Render a tmux `capture-pane -e -p` dump (text with SGR escapes) to a PNG, cell by cell.

usage: ansi2png.py INPUT.ans OUTPUT.png --cols N --rows N [--bg #rrggbb --fg #rrggbb]
"""
import argparse
import re
import unicodedata

from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu/"
# Glyphs DejaVu Sans Mono lacks (control pictures such as the ESC symbol, the hourglass) come
# from these, in order; a cell never shows a missing-glyph box.
FALLBACKS = [
    "/usr/share/fonts/truetype/freefont/FreeMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSerif.ttf",
]
BASIC = [
    (0x00, 0x00, 0x00), (0xcd, 0x31, 0x31), (0x0d, 0xbc, 0x79), (0xe5, 0xe5, 0x10),
    (0x24, 0x72, 0xc8), (0xbc, 0x3f, 0xbc), (0x11, 0xa8, 0xcd), (0xe5, 0xe5, 0xe5),
    (0x66, 0x66, 0x66), (0xf1, 0x4c, 0x4c), (0x23, 0xd1, 0x8b), (0xf5, 0xf5, 0x43),
    (0x3b, 0x8e, 0xea), (0xd6, 0x70, 0xd6), (0x29, 0xb8, 0xdb), (0xff, 0xff, 0xff),
]
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def xterm256(n):
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


def hexcolor(s):
    s = s.lstrip("#")
    return tuple(int(s[i:i + 2], 16) for i in (0, 2, 4))


class Pen:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.reverse = False

    def apply(self, params):
        codes = [int(p) if p else 0 for p in re.split("[;:]", params)] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASIC[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASIC[c - 90 + 8]
            elif 40 <= c <= 47:
                self.bg = BASIC[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASIC[c - 100 + 8]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    col = xterm256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    col = tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    col = None
                if c == 38:
                    self.fg = col
                else:
                    self.bg = col
            i += 1


def width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--bg", default="#0d1117")
    ap.add_argument("--fg", default="#c9d1d9")
    ap.add_argument("--size", type=int, default=15)
    a = ap.parse_args()

    regular = ImageFont.truetype(FONT_DIR + "DejaVuSansMono.ttf", a.size)
    bold = ImageFont.truetype(FONT_DIR + "DejaVuSansMono-Bold.ttf", a.size)
    mono_cmap = TTFont(FONT_DIR + "DejaVuSansMono.ttf").getBestCmap()
    fallbacks = [(TTFont(p).getBestCmap(), ImageFont.truetype(p, a.size)) for p in FALLBACKS]
    cw = round(regular.getlength("M"))
    ch = round(a.size * 1.3)
    pad = 12
    default_bg, default_fg = hexcolor(a.bg), hexcolor(a.fg)
    img = Image.new("RGB", (a.cols * cw + 2 * pad, a.rows * ch + 2 * pad), default_bg)
    draw = ImageDraw.Draw(img)

    with open(a.input, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")[: a.rows]
    pen = Pen()
    for row, line in enumerate(lines):
        col = 0
        pos = 0
        while pos < len(line) and col < a.cols:
            m = SGR.match(line, pos)
            if m:
                pen.apply(m.group(1))
                pos = m.end()
                continue
            if line[pos] == "\x1b":
                nxt = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]").match(line, pos)
                pos = nxt.end() if nxt else pos + 1
                continue
            c = line[pos]
            pos += 1
            w = width(c)
            if w == 0:
                continue
            fg = pen.fg or default_fg
            bg = pen.bg or default_bg
            if pen.reverse:
                fg, bg = bg, fg
            if pen.dim:
                fg = tuple((x + y) // 2 for x, y in zip(fg, bg))
            x, y = pad + col * cw, pad + row * ch
            if bg != default_bg:
                draw.rectangle([x, y, x + w * cw - 1, y + ch - 1], fill=bg)
            if c != " ":
                if c in "─│┌┐└┘├┤┬┴┼":
                    draw_box(draw, c, x, y, cw, ch, fg)
                elif c in "▌█":
                    right = x + (cw // 2 if c == "▌" else cw) - 1
                    draw.rectangle([x, y, right, y + ch - 1], fill=fg)
                else:
                    font = bold if pen.bold else regular
                    if ord(c) not in mono_cmap:
                        font = next((f for cmap, f in fallbacks if ord(c) in cmap), font)
                    draw.text((x, y + (ch - a.size) // 2 - 1), c, font=font, fill=fg)
            if pen.underline:
                draw.line([x, y + ch - 2, x + w * cw - 1, y + ch - 2], fill=fg)
            col += w
    img.save(a.output)


def draw_box(draw, c, x, y, cw, ch, fg):
    """Box-drawing characters joined across cells, as a terminal draws them."""
    mx, my = x + cw // 2, y + ch // 2
    right, bottom = x + cw - 1, y + ch - 1
    segs = {
        "─": [(x, my, right, my)],
        "│": [(mx, y, mx, bottom)],
        "┌": [(mx, my, right, my), (mx, my, mx, bottom)],
        "┐": [(x, my, mx, my), (mx, my, mx, bottom)],
        "└": [(mx, y, mx, my), (mx, my, right, my)],
        "┘": [(mx, y, mx, my), (x, my, mx, my)],
        "├": [(mx, y, mx, bottom), (mx, my, right, my)],
        "┤": [(mx, y, mx, bottom), (x, my, mx, my)],
        "┬": [(x, my, right, my), (mx, my, mx, bottom)],
        "┴": [(x, my, right, my), (mx, y, mx, my)],
        "┼": [(x, my, right, my), (mx, y, mx, bottom)],
    }
    for s in segs[c]:
        draw.line(s, fill=fg)


if __name__ == "__main__":
    main()
