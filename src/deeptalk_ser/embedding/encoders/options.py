"""The encoder options this project offers (``conf/encoder/*.yaml``), used as the allow-list
for encoder records that arrive in shared files.

A saved head (``head.json``) says which encoder made its features so that ``predict.py`` can
embed new audio the same way. That record is data from whoever shared the folder: it may name
one of our encoder options and set that option's own keys to plain values, nothing else. The
class to build (``_target_``) always comes from the project's YAML, never from the file, and
``trust_checkpoint`` (unpickling a checkpoint) can only be switched on by the user running it.
A fused head (``encoder=fusion``) records each part the same way: its option and its keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.utils.errors import DataError

PLAIN = (str, int, float, bool, type(None))
#: the option of ``conf/encoder/fusion.yaml``: parts, each one of the single-model options
FUSION = "fusion"


def encoder_conf_dir() -> Path:
    """``conf/encoder`` of the checkout (``PROJECT_ROOT``, set by the entry scripts, or this file's repo)."""
    root = os.environ.get("PROJECT_ROOT") or Path(__file__).resolve().parents[4]
    return Path(root) / "conf" / "encoder"


def project_encoders() -> dict[str, dict[str, Any]]:
    """Every single-model encoder option (``name -> its YAML``, interpolations left unresolved)."""
    found = {}
    for path in sorted(encoder_conf_dir().glob("*.yaml")):
        node = OmegaConf.load(path)
        if isinstance(node, DictConfig) and "_target_" in node:
            found[path.stem] = OmegaConf.to_container(node, resolve=False)
    return found


def encoder_option_of(enc_cfg: Mapping[str, Any]) -> str | None:
    """The option name (``ge2e``, ``deeptalk``, ...) whose class ``enc_cfg`` builds, if any."""
    target = enc_cfg.get("_target_")
    return next((name for name, node in project_encoders().items() if node["_target_"] == target), None)


def saved_encoder_record(enc_cfg: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(option, record) a saved head keeps for an encoder config: the option's name and its keys
    without ``_target_``; for ``encoder=fusion``, ``fusion`` and ``{"name", "parts": {key:
    {"option", "config"}}}``. The option is None when a config (or a part's) is no project option."""
    if "parts" not in enc_cfg:
        return encoder_option_of(enc_cfg), {k: v for k, v in enc_cfg.items() if k != "_target_"}
    parts = {}
    for key, part in dict(enc_cfg["parts"]).items():
        option, record = saved_encoder_record(part)
        if option is None or option == FUSION:
            return None, {}
        parts[str(key)] = {"option": option, "config": record}
    return FUSION, {"name": FUSION, "parts": parts}


def _check_plain(value: Any, where: Path, key: str) -> None:
    if isinstance(value, PLAIN):
        return
    if isinstance(value, list) and all(isinstance(v, PLAIN) for v in value):
        return
    raise DataError(where, f"refused: encoder key {key!r} holds {type(value).__name__}, not a plain value")


def _check_against(record: Mapping[str, Any], offered: Mapping[str, Any], where: Path, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str) or key not in offered or key == "_target_":
            raise DataError(where, f"refused: encoder key {full!r} is not an option of this encoder")
        if isinstance(offered[key], dict):
            if not isinstance(value, dict):
                raise DataError(where, f"refused: encoder key {full!r} must be a mapping")
            out[key] = _check_against(value, offered[key], where, f"{full}.")
        else:
            _check_plain(value, where, full)
            out[key] = value
    return out


def validated_encoder_config(record: Any, option: str | None, where: str | Path,
                             allow_trust_checkpoint: bool = False) -> dict[str, Any]:
    """``record`` (an encoder config read from a shared file) checked against the project's
    option ``option`` (or the option its ``_target_`` names): known keys, plain values, and the
    project's own ``_target_``. Anything else is a :class:`DataError` naming ``where`` and the key."""
    where = Path(where)
    if not isinstance(record, dict):
        raise DataError(where, "refused: the encoder record is not a mapping")
    if option == FUSION:
        return _validated_fusion(record, where, allow_trust_checkpoint)
    offered = project_encoders()
    name = option if option is not None else encoder_option_of(record)
    if name not in offered:
        shown = option if option is not None else record.get("_target_")
        raise DataError(where, f"refused: encoder {shown!r} is not one this project offers ({', '.join(offered)})")
    node = offered[name]
    if "_target_" in record and record["_target_"] != node["_target_"]:
        raise DataError(where, f"refused: encoder._target_ {record['_target_']!r} is not the class of "
                               f"encoder={name} ({node['_target_']})")
    checked = _check_against({k: v for k, v in record.items() if k != "_target_"}, node, where, "")
    if checked.get("trust_checkpoint") and not allow_trust_checkpoint:
        raise DataError(where, "refused: the file asks to unpickle its encoder checkpoint (trust_checkpoint: true); "
                               "only you can allow that: predict.py trust_checkpoint=true, for files you trust")
    return {"_target_": str(node["_target_"]), **checked}


def _validated_fusion(record: dict[str, Any], where: Path, allow_trust_checkpoint: bool) -> dict[str, Any]:
    """A fused head's encoder record: ``name: fusion`` and two or more parts, each a project
    option (not fusion) with that option's own keys; returned as ``encoder=fusion``'s config."""
    if not (encoder_conf_dir() / f"{FUSION}.yaml").is_file():
        raise DataError(where, f"refused: encoder {FUSION!r} is not one this project offers")
    unknown = sorted(set(record) - {"name", "parts"})
    if unknown or record.get("name") != FUSION:
        raise DataError(where, f"refused: a fusion encoder record holds only name: {FUSION} and parts"
                               f"{f', not {unknown}' if unknown else ''}")
    parts = record.get("parts")
    if not isinstance(parts, dict) or len(parts) < 2:
        raise DataError(where, "refused: encoder.parts must map two or more part names to encoders")
    checked = {}
    for key, part in parts.items():
        if not isinstance(key, str) or not isinstance(part, dict) or set(part) != {"option", "config"} \
                or not isinstance(part["option"], str) or part["option"] == FUSION:
            raise DataError(where, f"refused: encoder.parts.{key} must hold an option (not {FUSION}) and its config")
        checked[key] = validated_encoder_config(part["config"], part["option"], where, allow_trust_checkpoint)
    return {"name": FUSION, "parts": checked}
