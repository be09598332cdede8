"""Pictures of runs: training curves from ``metrics.jsonl`` and attention heat maps.

matplotlib is an optional extra (``pip install 'seq2seq_rnn[plot]'``); it is
imported on first use, with the Agg backend, so plotting works without a display.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.inference.stream import StreamSettings, output_line
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.run.outputs import OutputFolder

if TYPE_CHECKING:
    from seq2seq_rnn.inference.translator import Translator

# (file name, y label, [(metrics key, legend suffix)]) of each curve picture
CURVES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("loss.png", "loss per target token", [("loss", "train"), ("val_loss", "validation")]),
    ("bleu.png", "validation BLEU", [("val_bleu", "")]),
    ("lr.png", "learning rate", [("lr", "")]),
]
PLOT_NAMES = frozenset(name for name, _, _ in CURVES)


def attention_plot_path(folder: Path, number: int) -> Path:
    """Where sentence ``number`` (from 1) of ``translate --attention-plot`` goes."""
    return Path(folder) / f"attention-{number:04d}.png"


def attention_plot_folder(folder: Path, sentences: int, inputs: Sequence[Path] = ()) -> OutputFolder:
    """The checked folder of ``translate --attention-plot`` for ``sentences`` plots."""
    out = OutputFolder(folder, "translate --attention-plot", inputs, strict=True)
    out.check(attention_plot_path(folder, n).name for n in range(1, sentences + 1))
    return out


def translate_with_attention_plots(
    translator: Translator,
    lines: Iterable[str],
    settings: StreamSettings,
    folder: Path,
    inputs: Sequence[Path] = (),
) -> Iterator[str]:
    """``translate --attention-plot``: the output line of each of ``lines``, in order, and a heat map
    per sentence in ``folder`` (``attention_plot_path``), written after its line is taken.

    All lines are decoded before the first one comes back; the folder (owned through its manifest,
    never one of ``inputs``) and matplotlib are checked first.
    """
    lines = list(lines)
    out = attention_plot_folder(folder, len(lines), inputs)
    pyplot()  # fail before decoding when matplotlib is missing
    return _plotted(translator.translate_with_attention(lines, settings.beam_size, settings.batch_size), out)


def _plotted(found: list[Any], out: OutputFolder) -> Iterator[str]:
    for number, item in enumerate(found, 1):
        yield output_line(item.translation)
        if item.weights is not None:
            name = attention_plot_path(out.folder, number).name
            out.write(
                name, lambda tmp, i=item: plot_attention(i.weights, i.source_pieces, i.target_pieces, tmp, i.source)
            )


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend; a ConfigError that says what to install when missing."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib: pip install 'seq2seq_rnn[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of every row that has ``key``; the last value wins on a repeated step."""
    points = {int(r["step"]): float(r[key]) for r in rows if key in r and r[key] is not None and "step" in r}
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's folder name, or its path when two runs share a name."""
    names = [Path(r).resolve().name for r in run_dirs]
    return [str(r) if names.count(n) > 1 else n for r, n in zip(run_dirs, names, strict=True)]


def plot_runs(run_dirs: Sequence[Path], output: Path) -> list[Path]:
    """Write loss.png, bleu.png and lr.png for the runs (overlaid) into ``output``; returns the paths."""
    output = Path(output)
    inputs = [p for r in run_dirs for p in (Path(r), RunDir(Path(r)).metrics)]
    folder = OutputFolder(output, "plot", inputs, strict=True)
    folder.check(PLOT_NAMES)
    plt = pyplot()
    runs = [
        (label, RunDir(Path(r)).read_metrics(required=True))
        for label, r in zip(run_labels(run_dirs), run_dirs, strict=True)
    ]
    written = []
    for name, ylabel, keys in CURVES:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        drawn = 0
        for label, rows in runs:
            for key, suffix in keys:
                steps, values = series(rows, key)
                if not steps:
                    continue
                style = "--" if key.startswith("val_") and len(keys) > 1 else "-"
                legend = f"{label} {suffix}".strip() if len(runs) > 1 or suffix else label
                ax.plot(steps, values, style, marker="o" if len(steps) < 30 else None, markersize=3, label=legend)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no data logged yet", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize="small")
        if name == "lr.png" and drawn:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} — {', '.join(label for label, _ in runs)}", fontsize="medium")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        written.append(folder.write(name, lambda tmp, fig=fig: fig.savefig(tmp, format="png")))
        plt.close(fig)
    return written


def plot_attention(weights: Any, source: Sequence[str], target: Sequence[str], path: Path, title: str = "") -> Path:
    """A heat map of ``weights`` (T, S): target subwords down, source subwords across."""
    plt = pyplot()
    data = weights.detach().float().cpu().numpy() if hasattr(weights, "detach") else weights
    rows, cols = data.shape
    if (rows, cols) != (len(target), len(source)):
        raise ValueError(
            f"weights are {rows}×{cols} but there are {len(target)} target and {len(source)} source pieces"
        )
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 2), max(3.0, 0.4 * rows + 1.5)), dpi=110)
    # colours span 0 … the largest weight, so a weakly peaked map still shows its shape (the bar gives values)
    image = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=max(float(data.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(cols), labels=list(source), rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(rows), labels=list(target), fontsize="small")
    ax.set_xlabel("source subwords")
    ax.set_ylabel("target subwords")
    if title:
        ax.set_title(title if len(title) <= 70 else title[:67] + "…", fontsize="small")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
