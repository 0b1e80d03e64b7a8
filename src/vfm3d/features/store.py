"""The feature cache: a folder of safetensors shards plus a JSON manifest.

Layout of a cache folder::

    manifest.json                 merged index (replaced atomically)
    manifest.part-<rank>.jsonl    journal of one rank since the last merge (one fsynced line per shard)
    shards/<ab>/<hash>.safetensors  one shard per put: tokens + frame_index of one or more entries

A result is keyed by `FeatureKey` (backbone fingerprint, layer, timestep, clip id, input size,
frame indices, seed); ``FeatureKey.digest`` is its stable string hash. Each shard is written
under a temporary name and renamed when complete, then the rank's manifest part is replaced
then a line naming it and its entries is appended (and fsynced) to the rank's journal, so a
crash at any moment leaves a consistent cache (a torn last journal line is ignored): a rerun
redoes only what is missing. The index seen by readers is ``manifest.json`` united with every part file, so entries
of a crashed or still running rank are visible; `FeatureStore.merge` folds the parts into
``manifest.json`` (rank 0 does it at the end of a distributed run).

Every shard's sha256 (of the file bytes) is recorded and verified the first time the shard is
read by a store object; a mismatch raises `CorruptShardError` naming the shard, moves the shard
to ``corrupt/`` and drops its entries, so the next extraction recomputes them.

Tokens are stored per clip as ``[T', h, w, C]`` in float16 (default) or bfloat16; float16
overflow is refused with a hint to use bfloat16. Reads are memory-mapped (``safe_open``) and can
select feature frames without reading the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vfm3d.features.extract import Features
from vfm3d.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

MANIFEST = "manifest.json"
PART_PREFIX = "manifest.part-"
SHARDS = "shards"
CORRUPT = "corrupt"
FORMAT = "vfm3d-features"
VERSION = 1
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class CorruptShardError(RuntimeError):
    """A shard's bytes do not match its recorded checksum (or it cannot be read)."""

    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(
            f"corrupt feature shard {shard}: {reason}; its entries were dropped and will be "
            "recomputed by the next `vfm3d extract`"
        )
        self.shard = shard


@dataclass(frozen=True)
class FeatureKey:
    """Identity of one cached result.

    - ``backbone``: ``Backbone.fingerprint`` (name + weights hash).
    - ``layer``: block index; ``timestep``: scheduler timestep or ``None`` (non-diffusion).
    - ``clip_id``: the clip's id; ``input_size``: ``(T, H, W)`` fed to the model.
    - ``frame_indices``: indices of the clip's frames that were fed, in order.
    - ``seed``: noise seed of the extraction.
    """

    backbone: str
    layer: int
    timestep: int | None
    clip_id: str
    input_size: tuple[int, int, int]
    frame_indices: tuple[int, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "frame_indices", tuple(int(v) for v in self.frame_indices))
        if len(self.input_size) != 3:
            raise ValueError(f"input_size: must be (T, H, W), got {self.input_size}")
        if len(self.frame_indices) != self.input_size[0]:
            raise ValueError(
                f"frame_indices: {len(self.frame_indices)} indices for T={self.input_size[0]}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for tuples)."""
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        out["frame_indices"] = list(self.frame_indices)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureKey:
        return cls(
            backbone=str(data["backbone"]),
            layer=int(data["layer"]),
            timestep=None if data["timestep"] is None else int(data["timestep"]),
            clip_id=str(data["clip_id"]),
            input_size=tuple(data["input_size"]),
            frame_indices=tuple(data["frame_indices"]),
            seed=int(data["seed"]),
        )

    @property
    def digest(self) -> str:
        """Stable 32-hex-digit hash of the key (independent of Python's hash seed)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class StoreEntry:
    """One manifest entry: where the tokens live and what they look like."""

    key: FeatureKey
    shard: str
    shape: tuple[int, ...]
    dtype: str
    meta: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _empty_index() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "shards": {}, "entries": {}}


def _read_journal(path: Path) -> dict[str, Any]:
    """A rank's journal: one JSON index fragment per line; torn (unparsable) lines are skipped."""
    index = _empty_index()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a write cut short by a crash: its shard is simply recomputed
        index["shards"].update(record.get("shards", {}))
        index["entries"].update(record.get("entries", {}))
    return index


def _read_index(path: Path) -> dict[str, Any]:
    if path.suffix == ".jsonl":
        return _read_journal(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable feature-cache manifest ({error})") from error
    if data.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a vfm3d feature-cache manifest (format {data.get('format')!r})"
        )
    if int(data.get("version", 0)) > VERSION:
        raise ValueError(f"{path}: manifest version {data['version']} is newer than {VERSION}")
    data.setdefault("shards", {})
    data.setdefault("entries", {})
    return data


class FeatureStore:
    """A resumable, crash-safe feature cache folder (see module docstring).

    Args:
        path: the cache folder (created if missing).
        dtype: storage dtype of new entries: ``"float16"`` (default), ``"bfloat16"`` or
            ``"float32"``.
        rank: writer rank; each rank appends to its own ``manifest.part-<rank>.jsonl``.
        verify_on_read: check each shard's sha256 the first time it is read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dtype: str = "float16",
        rank: int = 0,
        verify_on_read: bool = True,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.root = Path(path)
        if self.root.exists() and not self.root.is_dir():
            raise FileExistsError(f"feature cache path is a file, not a folder: {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.rank = int(rank)
        self.verify_on_read = verify_on_read
        self._verified: set[str] = set()
        self.reload()

    # ------------------------------------------------------------------ index
    @property
    def part_path(self) -> Path:
        return self.root / f"{PART_PREFIX}{self.rank}.jsonl"

    def _index_files(self) -> list[Path]:
        files = [self.root / MANIFEST] if (self.root / MANIFEST).is_file() else []
        return files + sorted(self.root.glob(f"{PART_PREFIX}*.jsonl"))

    def reload(self) -> None:
        """Re-read ``manifest.json`` and every rank's journal."""
        self._index = _empty_index()
        for path in self._index_files():
            data = _read_index(path)
            self._index["shards"].update(data["shards"])
            self._index["entries"].update(data["entries"])

    def _entry(self, key: FeatureKey) -> dict[str, Any] | None:
        return self._index["entries"].get(key.digest)

    def entry(self, key: FeatureKey) -> StoreEntry | None:
        """The manifest entry of ``key`` (``None`` if absent)."""
        entry = self._entry(key)
        return None if entry is None else _to_entry(entry)

    def has(self, key: FeatureKey) -> bool:
        """True if ``key`` is indexed and its shard file exists (checksum checked on read)."""
        entry = self._entry(key)
        return entry is not None and (self.root / entry["shard"]).is_file()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, FeatureKey) and self.has(key)

    def __len__(self) -> int:
        return len(self._index["entries"])

    def entries(self, **filters: Any) -> list[StoreEntry]:
        """Entries whose key fields equal ``filters`` (e.g. ``layer=20, clip_id="a"``)."""
        fields = set(FeatureKey.__dataclass_fields__)
        unknown = set(filters) - fields
        if unknown:
            raise ValueError(f"entries: unknown filter {sorted(unknown)}; use {sorted(fields)}")
        out = []
        for entry in self._index["entries"].values():
            key = FeatureKey.from_dict(entry["key"])
            if all(getattr(key, name) == _normalise(value) for name, value in filters.items()):
                out.append(_to_entry(entry, key))
        return out

    def keys(self, **filters: Any) -> list[FeatureKey]:
        """Keys of `entries` (same filters)."""
        return [entry.key for entry in self.entries(**filters)]

    # ------------------------------------------------------------------ writing
    def put(
        self,
        key: FeatureKey,
        tokens: torch.Tensor,
        frame_index: torch.Tensor,
        extra_meta: dict[str, Any] | None = None,
    ) -> str:
        """Store one result (``tokens`` ``[T', h, w, C]`` or ``[1, T', h, w, C]``); returns the shard."""
        return self.put_many([(key, tokens, frame_index, extra_meta)])

    def put_many(
        self,
        items: Sequence[tuple[FeatureKey, torch.Tensor, torch.Tensor, dict[str, Any] | None]],
    ) -> str:
        """Store several results in one shard (atomic: all or none). Returns the shard path."""
        if not items:
            raise ValueError("put_many: nothing to store")
        tensors: dict[str, torch.Tensor] = {}
        new_entries: dict[str, dict[str, Any]] = {}
        storage = _DTYPES[self.dtype]
        for key, tokens, frame_index, extra_meta in items:
            tokens = _check_tokens(key, tokens, frame_index)
            stored = tokens.detach().to("cpu", storage).contiguous()
            if not torch.isfinite(stored).all() and torch.isfinite(tokens).all():
                raise ValueError(
                    f"{key.clip_id} layer {key.layer}: features overflow {self.dtype} "
                    f"(max |x| = {float(tokens.abs().max()):.4g}); use dtype='bfloat16'"
                )
            digest = key.digest
            tensors[f"tokens.{digest}"] = stored
            tensors[f"frame_index.{digest}"] = frame_index.detach().to("cpu", torch.int64)
            new_entries[digest] = {
                "key": key.to_dict(),
                "shape": list(stored.shape),
                "dtype": self.dtype,
                "meta": dict(extra_meta or {}),
            }
        group = hashlib.sha256("".join(sorted(new_entries)).encode()).hexdigest()[:32]
        shard = f"{SHARDS}/{group[:2]}/{group}.safetensors"
        from safetensors.torch import save_file

        metadata = {"keys": json.dumps([e["key"] for e in new_entries.values()])}
        with atomic_path(self.root / shard) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            checksum = file_sha256(tmp)
        shard_info = {"sha256": checksum, "bytes": (self.root / shard).stat().st_size}
        for entry in new_entries.values():
            entry["shard"] = shard
        self._index["shards"][shard] = shard_info
        self._index["entries"].update(new_entries)
        self._verified.add(shard)
        record = json.dumps({"shards": {shard: shard_info}, "entries": new_entries})
        with open(self.part_path, "a", encoding="utf-8") as journal:
            journal.write("\n" + record + "\n")  # leading newline isolates a torn previous line
            journal.flush()
            os.fsync(journal.fileno())
        return shard

    # ------------------------------------------------------------------ reading
    def get(
        self,
        key: FeatureKey,
        feature_frames: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
    ) -> Features:
        """Read one result: ``tokens`` ``[1, T', h, w, C]`` (or only ``feature_frames``).

        ``frame_index`` ``[T]`` maps the key's input frames to feature frames (not re-indexed
        when ``feature_frames`` is given). Raises ``KeyError`` if absent and
        `CorruptShardError` if the shard fails its checksum.
        """
        entry = self._entry(key)
        if entry is None:
            raise KeyError(f"no cached features for {key} in {self.root}")
        shard = entry["shard"]
        path = self.root / shard
        if not path.is_file():
            raise KeyError(f"shard {shard} of {key.clip_id} is missing from {self.root}")
        if self.verify_on_read and shard not in self._verified:
            self._verify_shard(shard)
        from safetensors import safe_open

        digest = key.digest
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                if feature_frames is None:
                    tokens = handle.get_tensor(f"tokens.{digest}")
                else:
                    view = handle.get_slice(f"tokens.{digest}")
                    tokens = torch.stack([view[int(i) : int(i) + 1][0] for i in feature_frames])
                frame_index = handle.get_tensor(f"frame_index.{digest}")
        except Exception as error:
            self._drop_shard(shard)
            raise CorruptShardError(shard, f"unreadable ({error})") from error
        if dtype is not None:
            tokens = tokens.to(dtype)
        return Features(
            tokens=tokens[None], frame_index=frame_index, layer=key.layer, timestep=key.timestep
        )

    def _verify_shard(self, shard: str) -> None:
        expected = self._index["shards"].get(shard, {}).get("sha256")
        actual = file_sha256(self.root / shard)
        if expected is None or actual != expected:
            self._drop_shard(shard)
            raise CorruptShardError(
                shard,
                f"sha256 {actual[:12]}... does not match the recorded {str(expected)[:12]}...",
            )
        self._verified.add(shard)

    def verify(self) -> list[str]:
        """Check every shard's checksum; drop corrupt ones. Returns the corrupt shards."""
        bad = []
        for shard in sorted({e["shard"] for e in self._index["entries"].values()}):
            if not (self.root / shard).is_file():
                continue
            try:
                self._verify_shard(shard)
            except CorruptShardError:
                bad.append(shard)
        return bad

    def _drop_shard(self, shard: str) -> None:
        """Move ``shard`` to ``corrupt/`` and remove its entries from every index file."""
        source = self.root / shard
        if source.is_file():
            target = self.root / CORRUPT / Path(shard).name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        self._verified.discard(shard)
        for path in self._index_files():
            data = _read_index(path)
            if _remove_shard(data, shard):
                if path.suffix == ".jsonl":
                    atomic_write_text(path, json.dumps(data) + "\n")
                else:
                    atomic_write_json(path, data)
        _remove_shard(self._index, shard)

    # ------------------------------------------------------------------ merging
    def merge(self) -> int:
        """Fold every part file into ``manifest.json`` (call when no rank is writing).

        Also removes leftover temporary files of crashed writers. Returns the number of entries.
        """
        self.reload()
        parts = [p for p in self._index_files() if p.name != MANIFEST]
        merged = _empty_index()
        live = {
            d: e for d, e in self._index["entries"].items() if (self.root / e["shard"]).is_file()
        }
        merged["entries"] = dict(sorted(live.items()))
        used = {e["shard"] for e in live.values()}
        merged["shards"] = {s: i for s, i in sorted(self._index["shards"].items()) if s in used}
        atomic_write_json(self.root / MANIFEST, merged)
        for part in parts:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        for tmp in (self.root / SHARDS).glob("*/.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.reload()
        return len(merged["entries"])

    def clear_corrupt(self) -> None:
        """Delete the ``corrupt/`` folder of quarantined shards."""
        shutil.rmtree(self.root / CORRUPT, ignore_errors=True)


def _to_entry(entry: dict[str, Any], key: FeatureKey | None = None) -> StoreEntry:
    return StoreEntry(
        key=key or FeatureKey.from_dict(entry["key"]),
        shard=entry["shard"],
        shape=tuple(entry["shape"]),
        dtype=entry["dtype"],
        meta=entry.get("meta", {}),
    )


def _remove_shard(index: dict[str, Any], shard: str) -> bool:
    drop = [d for d, e in index["entries"].items() if e["shard"] == shard]
    for digest in drop:
        del index["entries"][digest]
    had = index["shards"].pop(shard, None) is not None
    return bool(drop) or had


def _normalise(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_tokens(key: FeatureKey, tokens: torch.Tensor, frame_index: torch.Tensor) -> torch.Tensor:
    if tokens.ndim == 5:
        if tokens.shape[0] != 1:
            raise ValueError(f"tokens: one clip per entry, got batch {tokens.shape[0]}")
        tokens = tokens[0]
    if tokens.ndim != 4:
        raise ValueError(f"tokens: shape must be [T', h, w, C], got {tuple(tokens.shape)}")
    if frame_index.ndim != 1 or frame_index.shape[0] != key.input_size[0]:
        raise ValueError(
            f"frame_index: must be [T] with T={key.input_size[0]}, got {tuple(frame_index.shape)}"
        )
    if int(frame_index.max()) >= tokens.shape[0] or int(frame_index.min()) < 0:
        raise ValueError(
            f"frame_index: values must lie in [0, {tokens.shape[0] - 1}] (T' of tokens)"
        )
    return tokens
