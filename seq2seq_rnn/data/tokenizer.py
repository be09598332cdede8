"""Subword tokenization with sentencepiece: one joint model or one per language.

Special ids are fixed and shared by source and target models: PAD=0, UNK=1,
BOS=2, EOS=3. Files in a tokenizer folder: ``spm.model`` (joint) or
``spm.src.model`` + ``spm.tgt.model`` (separate), each with its ``.vocab``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq_rnn.config import TokenizerConfig
from seq2seq_rnn.errors import CheckpointError, DataError

logger = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
JOINT_PREFIX, SOURCE_PREFIX, TARGET_PREFIX = "spm", "spm.src", "spm.tgt"
_SKIP_IDS = frozenset({PAD_ID, BOS_ID, EOS_ID})


class SubwordTokenizer:
    """Source and target sentencepiece models (the same object when joint)."""

    def __init__(self, source: spm.SentencePieceProcessor, target: spm.SentencePieceProcessor, files: list[Path]):
        self._source = source
        self._target = target
        self._files = list(files)

    # ------------------------------------------------------------ building
    @classmethod
    def train(
        cls, cfg: TokenizerConfig, sources: Iterable[str], targets: Iterable[str], out_dir: Path, seed: int
    ) -> SubwordTokenizer:
        """Train on the given sentences and write the model file(s) into ``out_dir``.

        The sentences are streamed to sentencepiece (callers pass a bounded
        sample, ``tokenizer.sample_sentences``). If the corpus cannot fill
        ``cfg.vocab_size`` the vocabulary is smaller (a warning says by how much).
        The same input and seed give the same files.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        spm.set_random_generator_seed(seed)
        if cfg.joint:
            _remove_models(out_dir, (SOURCE_PREFIX, TARGET_PREFIX))
            _train_model(cfg, itertools.chain(sources, targets), out_dir / JOINT_PREFIX, "joint")
        else:
            _remove_models(out_dir, (JOINT_PREFIX,))
            _train_model(cfg, sources, out_dir / SOURCE_PREFIX, "source")
            _train_model(cfg, targets, out_dir / TARGET_PREFIX, "target")
        return cls.load(out_dir)

    @classmethod
    def load(cls, out_dir: str | Path) -> SubwordTokenizer:
        """Load the model(s) written by :meth:`train`; :class:`CheckpointError` if missing or corrupt."""
        out_dir = Path(out_dir)
        joint = out_dir / f"{JOINT_PREFIX}.model"
        if joint.is_file():
            model = _load_model(joint)
            return cls(model, model, [joint])
        source, target = out_dir / f"{SOURCE_PREFIX}.model", out_dir / f"{TARGET_PREFIX}.model"
        if source.is_file() and target.is_file():
            return cls(_load_model(source), _load_model(target), [source, target])
        raise CheckpointError(f"{out_dir}: no tokenizer found; expected {joint} or both {source} and {target}")

    # ----------------------------------------------------------- properties
    @property
    def joint(self) -> bool:
        return len(self._files) == 1

    @property
    def files(self) -> list[Path]:
        """The ``.model`` file(s): one when joint, else [source, target]."""
        return list(self._files)

    @property
    def fingerprint(self) -> str:
        """A digest of what encoding depends on: each model's type, pieces and scores.

        Not of the ``.model`` bytes: they also record the training options, the output
        path among them, so two runs training the same model would never share a cache.
        """
        sha = hashlib.sha256(b"joint" if self.joint else b"separate")
        for model in (self._source,) if self.joint else (self._source, self._target):
            for i in range(model.get_piece_size()):
                sha.update(f"{model.id_to_piece(i)}\t{model.get_score(i)}\t{model.is_byte(i)}\n".encode())
        return sha.hexdigest()[:24]

    @property
    def source_vocab_size(self) -> int:
        return self._source.get_piece_size()

    @property
    def target_vocab_size(self) -> int:
        return self._target.get_piece_size()

    # ------------------------------------------------------------ encoding
    def encode_source(self, texts: list[str]) -> list[list[int]]:
        """Subword ids of each sentence, without BOS/EOS (batching adds them)."""
        return self._source.encode(list(texts), out_type=int)

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        """Subword ids of each sentence, without BOS/EOS (batching adds them)."""
        return self._target.encode(list(texts), out_type=int)

    def decode_target(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized sentences. Each sequence is cut at its first EOS; PAD and BOS are skipped."""
        return [self._target.decode(_strip_specials(seq)) for seq in ids]

    def same_vocabulary(self, other: SubwordTokenizer) -> bool:
        """Do both map every source and target piece to the same id?"""
        return all(
            mine.get_piece_size() == theirs.get_piece_size()
            and all(mine.id_to_piece(i) == theirs.id_to_piece(i) for i in range(mine.get_piece_size()))
            for mine, theirs in ((self._source, other._source), (self._target, other._target))
        )

    def source_pieces(self, text: str) -> list[str]:
        """Subword pieces of one source sentence (e.g. for attention plots)."""
        return self._source.encode(text, out_type=str)

    def target_pieces(self, ids: Sequence[int]) -> list[str]:
        """The piece of each target id, specials included (e.g. ``</s>``)."""
        return [self._target.id_to_piece(int(i)) for i in ids]


# ---------------------------------------------------------------- helpers
def _strip_specials(ids: Iterable[int]) -> list[int]:
    kept = []
    for value in ids:
        value = int(value)
        if value == EOS_ID:
            break
        if value not in _SKIP_IDS:
            kept.append(value)
    return kept


def _train_model(cfg: TokenizerConfig, sentences: Iterable[str], prefix: Path, what: str) -> None:
    counted = [0]

    def lines() -> Iterator[str]:
        for sentence in sentences:
            if sentence.strip():
                counted[0] += 1
                yield sentence

    stream = lines()
    first = next(stream, None)
    if first is None:
        raise DataError(f"cannot train the {what} tokenizer: no non-empty sentences")
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.chain([first], stream),
            model_prefix=str(prefix),
            model_type=cfg.model_type,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            hard_vocab_limit=False,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=min(os.cpu_count() or 1, 16),
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise DataError(
            f"cannot train the {what} tokenizer (tokenizer.vocab_size={cfg.vocab_size}, "
            f"model_type={cfg.model_type}, {counted[0]} sentences): {exc}"
        ) from None
    size = _load_model(prefix.with_name(prefix.name + ".model")).get_piece_size()
    if size < cfg.vocab_size:
        logger.warning(
            "%s tokenizer: the corpus allows only %d of the requested %d subwords (tokenizer.vocab_size)",
            what,
            size,
            cfg.vocab_size,
        )


def _load_model(path: Path) -> spm.SentencePieceProcessor:
    model = spm.SentencePieceProcessor()
    try:
        model.load(str(path))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot load the sentencepiece model: {exc}") from None
    if (model.pad_id(), model.unk_id(), model.bos_id(), model.eos_id()) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise CheckpointError(f"{path}: special ids differ from PAD=0, UNK=1, BOS=2, EOS=3")
    return model


def _remove_models(out_dir: Path, prefixes: Iterable[str]) -> None:
    """Delete the other layout's files so :meth:`SubwordTokenizer.load` cannot pick stale ones."""
    for prefix in prefixes:
        for suffix in (".model", ".vocab"):
            (out_dir / f"{prefix}{suffix}").unlink(missing_ok=True)
