"""JSON-lines manifests: round trip, duplicate ids, malformed lines, extra-key collisions."""

from __future__ import annotations

import json

import pytest

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance, read_manifest, write_manifest


def _utts() -> list[Utterance]:
    return [
        Utterance(id="u1", path="/abs/a.wav", speaker="03", label="angry", split="train", duration=1.5,
                  sample_rate=16000, corpus="emodb", extra={"gender": "m", "valence": 2.5, "text": "a01"}),
        Utterance(id="u2", path="rel/b.wav", speaker="08", extra={"tags": ["x", "y"], "label_raw": 5}),
    ]


def test_round_trip_keeps_core_fields_and_extras(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, _utts())
    back = read_manifest(path)
    assert back == _utts()  # dataclass equality: every core field and the extras dict
    assert back[0].extra == {"gender": "m", "valence": 2.5, "text": "a01"}
    assert back[1].label is None and back[1].duration is None
    # on disk: one flat JSON object per line, extras next to the core keys
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["gender"] == "m" and first["speaker"] == "03" and "extra" not in first


def test_numeric_id_and_speaker_read_back_as_strings(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 7, "path": "a.wav", "speaker": 12}\n\n', encoding="utf-8")
    (u,) = read_manifest(path)
    assert u.id == "7" and u.speaker == "12"


def test_write_refuses_duplicate_ids_naming_the_file(tmp_path):
    path = tmp_path / "dup.jsonl"
    utts = [Utterance(id="same", path="a.wav", speaker="s"), Utterance(id="same", path="b.wav", speaker="s")]
    with pytest.raises(DataError) as ei:
        write_manifest(path, utts)
    assert str(path) in str(ei.value) and "same" in str(ei.value)
    assert not path.exists()


def test_read_refuses_duplicate_ids_naming_the_file(tmp_path):
    path = tmp_path / "dup.jsonl"
    line = json.dumps({"id": "x1", "path": "a.wav", "speaker": "s"})
    path.write_text(f"{line}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        read_manifest(path)
    assert ei.value.path == str(path)
    assert "x1" in str(ei.value)


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "path": "a.wav", "speaker": "s"})
    path.write_text(f"{good}\n\n{{not json\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        read_manifest(path)
    assert ei.value.line == 3  # blank line 2 still counts
    assert str(ei.value).startswith(f"{path}:3:")


@pytest.mark.parametrize("line", ['[1, 2]', '"just a string"', '42', 'null'])
def test_non_object_json_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "path": "a.wav", "speaker": "s"})
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        read_manifest(path)
    assert ei.value.path == str(path) and ei.value.line == 2


def test_line_missing_speaker_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "path": "a.wav"}\n', encoding="utf-8")
    with pytest.raises(DataError) as ei:
        read_manifest(path)
    assert ei.value.path == str(path) and ei.value.line == 1


def test_missing_manifest_names_path(tmp_path):
    with pytest.raises(DataError) as ei:
        read_manifest(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(ei.value)


@pytest.mark.parametrize("key", ["speaker", "label", "duration", "id"])
def test_extra_key_colliding_with_core_key_is_refused(tmp_path, key):
    u = Utterance(id="a", path="a.wav", speaker="s", extra={key: "oops"})
    with pytest.raises(ValueError, match=key):
        u.to_dict()
    with pytest.raises(ValueError):
        write_manifest(tmp_path / "m.jsonl", [u])
