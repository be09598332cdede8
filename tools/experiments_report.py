"""docs/experiments.md from the experiment runs: table, validation-BLEU curves, gradient figure.

Called by ``python tools/experiments.py report``. Everything here reads finished runs;
nothing trains. The gradient figure measures the vanishing-gradient claim directly:
for the first encoder layer of a trained model (and of the same model at initialisation),
the norm of the Jacobian ‖∂h_L / ∂x_t‖ of the last state with respect to each input
embedding, on real validation sentences cut to L subwords, as a function of the
distance L − 1 − t.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

PROBE_LENGTH = 24  # L: subwords per probed sentence
PROBE_SENTENCES = 64  # B
GRADIENT_RUNS = ("rnn_2l", "gru_2l", "lstm_2l")


# ------------------------------------------------------------------ gradients
def first_layer(model: nn.Module) -> tuple[nn.Embedding, nn.Module]:
    """The encoder's embedding and its first (forward) recurrent cell."""
    from seq2seq_rnn.cells.base import RecurrentCell

    encoder = model.encoder
    embed = next(m for m in encoder.modules() if isinstance(m, nn.Embedding))
    cell = next(m for m in encoder.modules() if isinstance(m, RecurrentCell))
    return embed, cell


def jacobian_norms(embed: nn.Embedding, cell: nn.Module, src: Tensor) -> Tensor:
    """src (B, L) → (L,) mean over B of ‖∂h_L/∂x_t‖_F, index 0 = the last input (distance 0)."""
    x = embed(src).detach().requires_grad_(True)  # (B, L, E)
    lengths = torch.full((src.size(0),), src.size(1), dtype=torch.long)
    state = cell.initial_state(src.size(0), src.device, x.dtype)
    out, _ = cell.forward_sequence(x, state, lengths)  # (B, L, H)
    last = out[:, -1]  # (B, H)
    squares = torch.zeros(src.shape)  # (B, L)
    for unit in range(last.size(1)):  # one backward pass per output unit: the exact Jacobian
        (grad,) = torch.autograd.grad(last[:, unit].sum(), x, retain_graph=True)
        squares += grad.pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)  # (L,)


def probe_batch(run_dir: Path) -> tuple[Any, Tensor]:
    """(translator, src (B, L)) from the run's validation sources."""
    from seq2seq_rnn.data.corpus import load_split
    from seq2seq_rnn.inference.translator import Translator

    translator = Translator.load(run_dir, "best", device="cpu")
    split = load_split(translator.recipe.data, "validation")  # the shared data cache
    ids = translator.tokenizer.encode_source(list(split.sources))
    long_enough = [s[:PROBE_LENGTH] for s in ids if len(s) >= PROBE_LENGTH][:PROBE_SENTENCES]
    return translator, torch.tensor(long_enough)


def untrained_like(translator: Any) -> nn.Module:
    """The run's model as initialised (same recipe, same seed), before any update."""
    from seq2seq_rnn.model import Seq2Seq

    torch.manual_seed(translator.recipe.seed)
    tok = translator.tokenizer
    return Seq2Seq.from_config(translator.recipe.model, tok.source_vocab_size, tok.target_vocab_size).eval()


def gradient_curves(budget_dirs: list[Path]) -> dict[str, dict[str, list[float]]]:
    """{cell: {"trained": [...], "initialised": [...]}} for the runs that exist, from the first
    budget folder that holds each (converged before early)."""
    curves: dict[str, dict[str, list[float]]] = {}
    for name in GRADIENT_RUNS:
        found = [d / name for d in budget_dirs if (d / name / "checkpoints" / "best.pt").is_file()]
        if not found:
            continue
        translator, src = probe_batch(found[0])
        cell_name = translator.recipe.model.encoder.cell
        with torch.enable_grad():
            curves[cell_name] = {
                "trained": jacobian_norms(*first_layer(translator.model.eval()), src).tolist(),
                "initialised": jacobian_norms(*first_layer(untrained_like(translator)), src).tolist(),
            }
    return curves


# ------------------------------------------------------------------ figures
def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        steps, bleu = zip(*row["curve"], strict=True) if row["curve"] else ((), ())
        ax.plot(steps, bleu, marker="o", markersize=3, label=row["name"])
    ax.set_xlabel("update")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.set_title("Multi30k de→en, validation BLEU during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_gradients(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (cell, both) in enumerate(sorted(curves.items())):
        color = f"C{index}"
        ax.semilogy(both["trained"], color=color, label=f"{cell}, trained")
        ax.semilogy(both["initialised"], color=color, linestyle="--", label=f"{cell}, initialised")
    ax.set_xlabel("distance L − 1 − t (subwords back from the last input)")
    ax.set_ylabel("‖∂h_L / ∂x_t‖ (mean over sentences)")
    ax.set_title("Gradient reaching each input, first encoder layer (forward direction)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ the page
def fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| variant | test BLEU | test chrF | best val BLEU | val BLEU by update | train loss (last) "
        "| params | tokens/s | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        curve = ", ".join(f"{bleu:.1f}" for _, bleu in r["curve"])
        lines.append(
            f"| `{r['name']}` | **{r['test']['bleu']:.2f}** | {r['test']['chrf']:.2f} | {fmt(r['best_val_bleu'])} "
            f"| {curve} | {fmt(r['final_train_loss'], 3)} | {r['parameters'] / 1e6:.2f} M "
            f"| {r['tokens_per_sec']:.0f} | {r['train_seconds'] / 60:.1f} min |"
        )
    return lines


def gradient_table(curves: dict[str, dict[str, list[float]]]) -> list[str]:
    distances = [d for d in (0, 4, 8, 16, PROBE_LENGTH - 1) if d < PROBE_LENGTH]
    lines = [
        "| cell | weights | " + " | ".join(f"d = {d}" for d in distances) + " | ratio d=max / d=0 |",
        "|---|---|" + "---|" * (len(distances) + 1),
    ]
    for cell, both in sorted(curves.items()):
        for when in ("initialised", "trained"):
            c = both[when]
            lines.append(
                f"| {cell} | {when} | "
                + " | ".join(f"{c[d]:.3g}" for d in distances)
                + f" | {c[distances[-1]] / c[0]:.2e} |"
            )
    return lines


def decoding_table(runs_dir: Path, names: list[str]) -> list[str]:
    """Beam size and length penalty chosen on validation (``tune-decoding``), where run."""
    lines = []
    for name in names:
        path = runs_dir / name / "decoding.json"
        if not path.is_file():
            continue
        found = json.loads(path.read_text(encoding="utf-8"))
        tried = ", ".join(
            f"b{r['beam_size']}/lp{r['length_penalty']}: {r['val_bleu']:.2f}" for r in found["validation"]
        )
        chosen = found["chosen"]
        lines.append(
            f"| `{name}` | beam {chosen['beam_size']}, length penalty {chosen['length_penalty']} "
            f"| {chosen['val_bleu']:.2f} | **{found['test']['bleu']:.2f}** / {found['test']['chrf']:.2f} | {tried} |"
        )
    if not lines:
        return []
    return [
        "| run | chosen on validation | val BLEU | test BLEU / chrF | every setting tried (val BLEU) |",
        "|---|---|---|---|---|",
        *lines,
        "",
    ]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def aggregate(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """{variant: seeds, mean/std of the scores, steps to the best checkpoint, ...} in grid order."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        if not mine:
            continue
        out[name] = {
            "seeds": sorted(r["seed"] for r in mine),
            "bleu": mean_std([r["test"]["bleu"] for r in mine]),
            "chrf": mean_std([r["test"]["chrf"] for r in mine]),
            "val_bleu": mean_std([r["best_val_bleu"] for r in mine]),
            "best_step": mean_std([float(r["best_step"]) for r in mine]),
            "converged": all(r.get("stopped_early", False) for r in mine),
            "parameters": mine[0]["parameters"],
            "minutes": mean_std([r["train_seconds"] / 60 for r in mine]),
        }
    return out


def pm(pair: tuple[float, float], n: int, digits: int = 2) -> str:
    mean, std = pair
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def converged_table(agg: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| variant | seeds | test BLEU | test chrF | best val BLEU | update of best | stopped by | params "
        "| train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in agg.items():
        n = len(a["seeds"])
        lines.append(
            f"| `{name}` | {n} | **{pm(a['bleu'], n)}** | {pm(a['chrf'], n)} | {pm(a['val_bleu'], n)} "
            f"| {pm(a['best_step'], n, 0)} | {'early stopping' if a['converged'] else '**cap (not converged)**'} "
            f"| {a['parameters'] / 1e6:.2f} M | {pm(a['minutes'], n, 0)} min |"
        )
    return lines


def exceeds_spread(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Whether the BLEU difference is larger than two standard errors of the difference."""
    na, nb = len(a["seeds"]), len(b["seeds"])
    if na < 2 or nb < 2:
        return "one seed: not known"
    se = math.sqrt(a["bleu"][1] ** 2 / na + b["bleu"][1] ** 2 / nb)
    diff = abs(a["bleu"][0] - b["bleu"][0])
    return f"yes ({diff:.2f} > 2 × {se:.2f})" if diff > 2 * se else f"no ({diff:.2f} ≤ 2 × {se:.2f})"


def comparison_table(grid: dict[str, Any], agg: dict[str, dict[str, Any]]) -> list[str]:
    """Each comparison group against its first variant: the BLEU difference and whether it exceeds the seed spread."""
    lines = ["| comparison | variant | against | Δ test BLEU | beyond seed spread? |", "|---|---|---|---|---|"]
    for group, spec in grid["comparisons"].items():
        members = [v for v in spec["variants"] if v in agg]
        for ref in members[:1]:
            for other in members[1:]:
                delta = agg[other]["bleu"][0] - agg[ref]["bleu"][0]
                lines.append(
                    f"| {group} | `{other}` | `{ref}` | {delta:+.2f} | {exceeds_spread(agg[other], agg[ref])} |"
                )
    return lines if len(lines) > 2 else []


def results_block(grid: dict[str, Any], names: list[str], tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    converged, early = tables.get("converged", []), tables.get("early", [])
    agg = aggregate(converged, names)
    done = {r["name"] for r in converged}
    missing = [n for n in names if n not in done]
    rows = converged or early
    return [
        "### Trained to convergence",
        "",
        *(converged_table(agg) if agg else ["(no converged run yet)"]),
        "",
        f"Not run yet to convergence: {', '.join(f'`{m}`' for m in missing)}." if missing else "Every variant ran.",
        "",
        *comparison_table(grid, agg),
        "",
        "### Early learning: 500 updates, seed 1",
        "",
        *(table(early) if early else ["(no 500-update run recorded)"]),
        "",
        f"Signatures: BLEU `{rows[0]['test']['bleu_signature']}`, chrF `{rows[0]['test']['chrf_signature']}`."
        if rows
        else "",
        "",
    ]


def write_report(
    grid: dict[str, Any],
    names: list[str],
    tables: dict[str, list[dict[str, Any]]],
    runs_dir: Path,
    docs: Path,
) -> None:
    images = docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    first_seed = [r for r in tables.get("converged") or tables.get("early", []) if r["seed"] == 1]
    plot_curves(first_seed, images / "experiments_val_bleu.png")
    curves = gradient_curves([runs_dir / "converged", runs_dir / "early"])
    if curves:
        plot_gradients(curves, images / "experiments_gradients.png")
    page = docs / "experiments.md"
    text = page.read_text(encoding="utf-8") if page.is_file() else "# Experiments\n"  # hand-written text is kept
    generated = [
        "<!-- generated by `python tools/experiments.py report` from runs/experiments; edit the text around it -->",
        "",
        *results_block(grid, names, tables),
        "![validation BLEU curves](images/experiments_val_bleu.png)",
        "",
        *decoding_table(runs_dir / "converged", names),
        *(
            gradient_table(curves) + ["", "![gradient per input position](images/experiments_gradients.png)"]
            if curves
            else ["(no rnn/gru/lstm run with checkpoints here: no gradient figure)"]
        ),
        "<!-- end generated -->",
    ]
    block = "\n".join(generated)
    if "<!-- generated" in text:
        head, _, rest = text.partition("<!-- generated")
        _, _, tail = rest.partition("<!-- end generated -->")
        text = head + block + tail
    else:
        text = text + "\n" + block + "\n"
    page.write_text(text, encoding="utf-8")
    counts = {budget: len(rows) for budget, rows in tables.items()}
    print(f"wrote {page} (finished runs per budget: {counts})")
