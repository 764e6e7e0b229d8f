"""SAMT's meta-file (``samt.optim.meta_file``): a checksum of the meta-parameters is stored by
``save_meta`` and checked on load, so that a bit-flipped file is refused with one clear line;
files written before the checksum existed are still read."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from samt.optim import SAMT, MetaInitError, read_meta
from samt.optim.meta_file import META_FORMAT, meta_checksum


def _samt(**options) -> SAMT:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    return SAMT(model, nn.functional.cross_entropy, step_type="element", **options)


def _trained(path: Path) -> SAMT:
    opt = _samt()
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        opt.step(torch.randn(4, 16, generator=gen), torch.randint(0, 3, (4,), generator=gen))
    opt.save_meta(path)
    return opt


def _largest_record_offset(path: Path) -> tuple[int, int]:
    """(offset, size) of the largest stored record's data in the zip that ``torch.save`` wrote."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_saved_file_holds_a_checksum_of_its_meta_parameters(tmp_path):
    opt = _trained(tmp_path / "samt_meta.pt")
    payload = torch.load(tmp_path / "samt_meta.pt", weights_only=True)
    assert payload["checksum"] == meta_checksum(payload["meta"])
    saved = read_meta(tmp_path / "samt_meta.pt")
    assert all(torch.equal(saved.meta[k], v) for k, v in opt.meta.state_dict().items())


def test_a_flipped_byte_is_refused_with_one_clear_line(tmp_path):
    path = tmp_path / "samt_meta.pt"
    _trained(path)
    offset, size = _largest_record_offset(path)
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(MetaInitError) as err:
        _samt(meta_init=path)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"meta_init={str(path)!r}: {path} is corrupt: its content does not "
                       "match the checksum stored in it")


def test_a_file_from_before_the_checksum_is_still_read(tmp_path):
    path = tmp_path / "old_meta.pt"
    opt = _trained(tmp_path / "new_meta.pt")
    payload = torch.load(tmp_path / "new_meta.pt", weights_only=True)
    assert payload["format"] == META_FORMAT
    del payload["checksum"]
    payload["version"] = 1
    torch.save(payload, path)
    fresh = _samt(meta_init=path)
    assert fresh.meta_init == path
    assert all(torch.equal(fresh.meta.state_dict()[k], v) for k, v in opt.meta.state_dict().items())
