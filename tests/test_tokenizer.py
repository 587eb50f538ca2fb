"""The emulator's approximate tokenizer: pre-tokenisation rules, block and request counts, images, PDFs."""

from __future__ import annotations

import base64
import csv
import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from parity.prompt import count_request
from parity import tokenizer as tk

OLD, NEW = "claude-sonnet-4-6", "claude-opus-4-7"  # new_tokenizer false / true in the catalogue


def test_pieces_follow_the_rules():
    assert tk.pieces("Hello, world") == ["Hello", ",", " world"]
    assert tk.pieces("internationalization") == ["intern", "ationa", "lizati", "on"]
    assert tk.pieces("1234567") == ["123", "456", "7"]
    assert tk.pieces('{"a": [1]}') == ['{"', "a", '":', " [", "1", "]}"]
    assert tk.pieces("a\n\n\nb        c") == ["a", "\n\n\n", "b", "        ", "c"]
    assert tk.pieces("東京都") == ["東", "京", "都"]
    assert tk.pieces("Ωμέγα") == ["Ωμ", "έγ", "α"]


@given(st.text())
def test_pieces_cover_every_character_exactly_once(text):
    parts = tk.pieces(text)
    assert "".join(parts) == text
    assert tk.count_text(text) == len(parts) <= len(text)


def test_empty_text_is_zero_tokens():
    assert tk.count_text("") == 0 and tk.count_block({"type": "text", "text": ""}) == 0


def test_english_is_about_four_characters_per_token(shared_dir):
    with open(shared_dir / "data" / "routellm-gsm8k-responses.csv", newline="", encoding="utf-8") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)][:300]
    chars = sum(map(len, prompts))
    ratio = chars / sum(tk.count_text(p) for p in prompts)
    assert 3.5 <= ratio <= 4.2, ratio


def test_new_tokenizer_counts_30_percent_more():
    text = "The quarterly report covers revenue, costs and the outlook. " * 7
    old = tk.count_text(text, OLD)
    assert old == tk.count_text(text) and tk.count_text(text, NEW) == math.ceil(old * 1.3)
    assert tk.count_text(text, "claude-opus-4-7-unknown-id") == old  # unknown ids: the older tokenizer


def test_reference_count_tokens_example():
    """Reference §7: "Hello, world" on claude-opus-5 answers {"input_tokens": 14} (the overheads are fit to it)."""
    params = {"model": "claude-opus-5", "messages": [{"role": "user", "content": "Hello, world"}]}
    assert count_request(params) == 14
    assert count_request({**params, "cache_control": {"type": "ephemeral"}}) == 14  # never changes the count


def test_request_count_adds_tools_and_the_hidden_tool_prompt():
    weather = {"name": "get_weather", "description": "Weather for a city.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
    params = {"model": "claude-opus-5", "messages": [{"role": "user", "content": "Hello, world"}]}
    with_tool = count_request({**params, "tools": [weather]})
    assert with_tool == 14 + tk.count_tool(weather, "claude-opus-5") + 286
    forced = count_request({**params, "tools": [weather], "tool_choice": {"type": "tool", "name": "get_weather"}})
    assert forced == with_tool + 406 - 286
    haiku = {**params, "model": "claude-haiku-4-5-20251001", "tools": [weather]}
    assert count_request(haiku) - count_request({**haiku, "tools": []}) == tk.count_tool(weather) + 496


def test_system_prompt_and_messages_add_up():
    one = {"model": OLD, "messages": [{"role": "user", "content": "Hi there"}]}
    two = {**one, "system": "Be brief.", "messages": one["messages"] + [
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]}  # fmt: skip
    expected = (count_request(one) + tk.count_text("Be brief.") + 2 * tk.MESSAGE_OVERHEAD
                + tk.count_text("Hello!") + tk.count_text("Bye"))  # fmt: skip
    assert count_request(two) == expected


def test_structured_blocks():
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    wrapper = tk.STRUCTURED_BLOCK_OVERHEAD
    assert tk.count_block(use) == wrapper + tk.count_text("get_weather") + tk.count_text('{"city":"Paris"}')
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny, 21 C"}]}
    assert tk.count_block(result) == tk.STRUCTURED_BLOCK_OVERHEAD + tk.count_text("sunny, 21 C")
    assert tk.count_block({**result, "content": "sunny, 21 C"}) == tk.count_block(result)
    thinking = {"type": "thinking", "thinking": "Paris is in France.", "signature": "x" * 400}
    assert tk.count_block(thinking) == tk.count_text("Paris is in France.")
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Clause 1. Pay."},
           "title": "Contract"}  # fmt: skip
    assert tk.count_block(doc) == wrapper + tk.count_text("Contract") + tk.count_text("Clause 1. Pay.")
    unknown = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result",
               "url": "https://example.com", "title": "Example", "encrypted_content": "abc"}]}  # fmt: skip
    assert tk.count_block(unknown) > tk.STRUCTURED_BLOCK_OVERHEAD


def test_tool_definition():
    tool = {"name": "lookup", "description": "Find a customer.", "input_schema": {"type": "object"},
            "cache_control": {"type": "ephemeral"}}  # fmt: skip
    parts = [tk.count_text(s) for s in ("lookup", "Find a customer.", '{"type":"object"}')]
    assert tk.count_tool(tool) == tk.TOOL_OVERHEAD + sum(parts)
    server = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    as_json = '{"type":"web_search_20250305","name":"web_search","max_uses":3}'
    assert tk.count_tool(server) == tk.TOOL_OVERHEAD + tk.count_text(as_json)


# ---- images -------------------------------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def png(w: int, h: int) -> dict:
    ihdr = b"\x00\x00\x00\rIHDR" + struct.pack(">II", w, h) + b"\x08\x02\x00\x00\x00"
    raw = b"\x89PNG\r\n\x1a\n" + ihdr + b"\x00" * 40
    return {"type": "base64", "media_type": "image/png", "data": b64(raw)}


def jpeg(w: int, h: int, app_bytes: int = 14) -> dict:
    app = b"\xff\xe1" + struct.pack(">H", app_bytes + 2) + b"\x00" * app_bytes
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x00" * 9
    return {"type": "base64", "media_type": "image/jpeg", "data": b64(b"\xff\xd8" + app + sof + b"\xff\xd9")}


def gif(w: int, h: int) -> dict:
    raw = b"GIF89a" + struct.pack("<HH", w, h) + b"\x00" * 20
    return {"type": "base64", "media_type": "image/gif", "data": b64(raw)}


def webp(w: int, h: int) -> dict:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    raw = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
    return {"type": "base64", "media_type": "image/webp", "data": b64(raw)}


def test_image_sizes_are_read_from_headers():
    assert tk.image_size(png(640, 480)) == (640, 480)
    assert tk.image_size(jpeg(800, 600)) == (800, 600)
    assert tk.image_size(jpeg(800, 600, app_bytes=60_000)) == (800, 600)  # frame header past the first 48 KB
    assert tk.image_size(gif(31, 17)) == (31, 17)
    assert tk.image_size(webp(1024, 768)) == (1024, 768)
    assert tk.image_size({"type": "url", "url": "https://example.com/a.png"}) is None
    assert tk.image_size({"type": "base64", "media_type": "image/png", "data": "not base64!"}) is None


def test_image_tokens_follow_width_times_height_over_750():
    assert tk.count_block({"type": "image", "source": png(1000, 1000)}) == 1334  # ceil(1e6 / 750)
    assert tk.count_block({"type": "image", "source": jpeg(200, 200)}) == 54
    assert tk.count_block({"type": "image", "source": png(1000, 1000)}, NEW) == 1334  # images are not text: no 1.3x


def test_large_images_are_downscaled_and_capped():
    big = {"type": "image", "source": png(3000, 2000)}
    assert tk.count_block(big, OLD) == 1600
    assert 1600 < tk.count_block(big, NEW) <= 4784
    tall = tk.count_block({"type": "image", "source": png(400, 4000)}, OLD)  # long edge 4000 -> 1568
    assert tall == math.ceil(157 * 1568 / 750)


def test_image_of_unknown_size_costs_the_cap():
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert tk.count_block(url, OLD) == 1600 and tk.count_block(url, NEW) == 4784


def test_pdf_pages():
    pages = b"".join(b"%d 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" % i for i in range(3, 6))
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n2 0 obj << /Type /Pages /Count 3 >> endobj\n" + pages
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(pdf)}}
    assert tk.count_block(doc) == tk.STRUCTURED_BLOCK_OVERHEAD + 3 * tk.PDF_PAGE_TOKENS
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    assert tk.count_block(url) == tk.STRUCTURED_BLOCK_OVERHEAD + tk.PDF_PAGE_TOKENS
