"""The model catalogue: parts joined and checked before anything is converted or cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from orchestrator.core import model_catalog
from orchestrator.core.errors import ModelIntegrityError, ModelNotFoundError
from orchestrator.core.model_catalog import (
    CATALOGUE,
    CatalogueModel,
    WheelPart,
    ensure_model,
    join_checked,
    locate_part,
    model_identity,
    model_source,
)


def split_model(tmp_path: Path, pieces: list[bytes]) -> tuple[CatalogueModel, dict[str, Path]]:
    """A catalogue row over files in ``tmp_path``, pinned to the pieces as given."""
    files = {}
    for number, piece in enumerate(pieces, start=1):
        files[f"pkg{number}/data/part{number}.bin"] = tmp_path / f"part{number}.bin"
        files[f"pkg{number}/data/part{number}.bin"].write_bytes(piece)
    joined = b"".join(pieces)
    model = CatalogueModel(
        name="tiny",
        hub_id="org/tiny",
        parts=tuple(WheelPart(f"pkg{n}==1.0", member) for n, member in enumerate(files, start=1)),
        size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest(),
        description="test",
    )
    return model, files


def fake_convert(gguf: Path, out_dir: Path) -> None:
    out_dir.mkdir()
    (out_dir / "config.json").write_text(json.dumps({"joined_bytes": gguf.stat().st_size}))


def test_parts_are_joined_in_order_checked_then_converted_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, files = split_model(tmp_path, [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 7])
    monkeypatch.setitem(CATALOGUE, "tiny", model)
    monkeypatch.setattr(model_catalog, "convert_gguf_to_safetensors", fake_convert)
    cache = tmp_path / "cache"
    target = ensure_model(cache, "tiny", locate=lambda part, scratch: files[part.member])
    assert json.loads((target / "config.json").read_text()) == {"joined_bytes": 8011}
    record = json.loads((target / "ttc-model.json").read_text())
    assert record["gguf_sha256"] == model.sha256 and record["packages"] == ["pkg1==1.0", "pkg2==1.0", "pkg3==1.0"]
    assert [p.name for p in cache.iterdir()] == ["tiny"]  # no scratch left behind
    assert model_identity(str(target)) == "tiny"


def test_a_corrupted_or_reordered_part_is_refused_and_nothing_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, files = split_model(tmp_path, [b"x" * 4000, b"y" * 4000])
    monkeypatch.setitem(CATALOGUE, "tiny", model)
    converted = []
    monkeypatch.setattr(model_catalog, "convert_gguf_to_safetensors", lambda *a: converted.append(a))
    corrupted = bytearray(files[model.parts[1].member].read_bytes())
    corrupted[1234] ^= 0xFF
    files[model.parts[1].member].write_bytes(bytes(corrupted))
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError, match=r"sha256 .* but the catalogue pins 8,000 bytes"):
        ensure_model(cache, "tiny", locate=lambda part, scratch: files[part.member])
    swapped = {model.parts[0].member: files[model.parts[1].member], model.parts[1].member: tmp_path / "part1.bin"}
    with pytest.raises(ModelIntegrityError):
        ensure_model(cache, "tiny", locate=lambda part, scratch: swapped[part.member])
    assert converted == [] and list(cache.iterdir()) == []


def test_the_real_small_model_matches_its_pin_and_a_flipped_byte_does_not(tmp_path: Path) -> None:
    model = CATALOGUE["smollm2-135m"]
    assert join_checked(model, tmp_path, locate_part).stat().st_size == model.size  # the installed wheel's file
    original = locate_part(model.parts[0], tmp_path)
    damaged = tmp_path / "damaged.gguf"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="smollm2-135m"):
        join_checked(model, tmp_path, lambda part, scratch: damaged)


def test_names_map_to_hub_ids_off_the_cpu_and_every_spelling_to_one_identity(tmp_path: Path) -> None:
    assert model_source("qwen2.5-coder-0.5b", tmp_path, on_cpu=lambda: False) == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert model_identity("Qwen/Qwen2.5-Coder-0.5B-Instruct") == "qwen2.5-coder-0.5b"
    assert model_identity("smollm2-135m") == "smollm2-135m"
    assert model_identity("other/model") == "other/model"
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        model_source("qwen-nope", tmp_path, on_cpu=lambda: True)
    with pytest.raises(ModelNotFoundError, match="no model called"):
        model_catalog.catalogue_model("qwen-nope")
