"""Corpus-level BLEU and chrF with sacrebleu, each reported with its signature.

Scores are computed on detokenized text; the signature (tokenizer, case,
smoothing, sacrebleu version) says exactly how, so numbers can be compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sacrebleu.metrics import BLEU, CHRF


@dataclass(frozen=True)
class Scores:
    """Corpus BLEU and chrF (0–100) over ``n`` sentences, with sacrebleu signatures."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """E.g. ``BLEU = 35.12  chrF = 61.03`` and one line per signature."""
        return (
            f"BLEU = {self.bleu:.2f}  chrF = {self.chrf:.2f}  ({self.n} sentences)\n"
            f"  bleu signature: {self.bleu_signature}\n"
            f"  chrf signature: {self.chrf_signature}"
        )


def score(hypotheses: list[str], references: list[str], tokenize: str = "13a", lowercase: bool = False) -> Scores:
    """Corpus BLEU and chrF of ``hypotheses`` against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references; they must pair up")
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses")
    hypotheses, references = list(hypotheses), list(references)
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = CHRF(lowercase=lowercase)
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    # a signature is only available after scoring
    return Scores(
        bleu=float(bleu_score.score),
        chrf=float(chrf_score.score),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        n=len(hypotheses),
    )
