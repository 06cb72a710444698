"""Figures drawn from the final table. Each function returns ``FigureResult``s: the files
written, or the reason a figure was skipped (a table without such data), never an empty plot."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.lines import Line2D

from evalwatt.report.figure_specs import safe_name
from evalwatt.report.figures._common import (
    FAMILY_WORDS,
    PALETTE,
    FigureResult,
    new_figure,
    pareto_front,
    place_labels,
    save,
    short_model,
)
from evalwatt.table.study_view import study_rows

Row = dict[str, Any]
STUDY_VIEW = (
    "one point per (model, benchmark): the lowest temperature, then the max_connections with "
    "the shortest inference (the study's view)"
)
TEMPERATURES = (0.0, 0.7)
# Relative difference of total parameters, |a - b| / max(a, b), within which two models are
# paired for a comparison. MoE and dense models are never the same size: their tolerance is
# wider, and it pairs models of the same memory footprint.
MATCH_TOLERANCE = {"reasoning": 0.10, "quantized": 0.10, "moe": 0.15}
FACTOR_WORDS = {
    "reasoning": ("reasoning", "not reasoning"),
    "quantized": ("quantized (weight_bits < 16)", "16-bit weights"),
    "moe": ("mixture of experts", "dense"),
}
BENCH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _energy(family: str) -> str:
    return f"{family}_energy_per_question_wh"


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _is_quantized(row: Row) -> bool:
    return row.get("weight_bits") is not None and row["weight_bits"] < 16


def _pearson_log(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 3:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxy = sum((a - mx) * (b - my) for a, b in pts)
    sxx = sum((a - mx) ** 2 for a, _ in pts)
    syy = sum((b - my) ** 2 for _, b in pts)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


# --- score against energy, per benchmark ------------------------------------------------------


def score_vs_energy(rows: Sequence[Row], out_dir: Path, family: str) -> list[FigureResult]:
    """Per benchmark: score against Wh per question (log x) with the Pareto front."""
    energy = _energy(family)
    columns = ("benchmark", "model", "score", "score_metric", energy, "moe", "reasoning")
    results = []
    by_bench: dict[str, list[Row]] = defaultdict(list)
    for row in study_rows(rows):
        by_bench[row["benchmark"]].append(row)
    for bench in sorted(by_bench):
        name = f"score_vs_energy__{safe_name(bench)}"
        usable = [r for r in by_bench[bench] if r["score"] is not None and r[energy] is not None]
        caption = (
            f"{bench}: score (column score) against {FAMILY_WORDS[family]} per question "
            f"(column {energy}, log scale), {STUDY_VIEW}. The line joins the Pareto front: "
            "models that no other model beats on both score and energy (up and to the left is "
            "better). Blue: dense; orange: mixture of experts (moe); triangle: reasoning; "
            "hollow: quantized (weight_bits < 16)."
        )
        left_out = len(by_bench[bench]) - len(usable)
        notes = (f"{left_out} model(s) left out: null score or energy",) if left_out else ()
        if not usable:
            results.append(
                FigureResult(
                    name,
                    caption,
                    columns,
                    skipped=f"no row with both a score and {energy}",
                    notes=notes,
                )
            )
            continue
        fig = new_figure(7.5, 5.2)
        ax = fig.add_subplot()
        xs = [r[energy] for r in usable]
        ys = [r["score"] for r in usable]
        for r, x, y in zip(usable, xs, ys, strict=True):
            colour = _colour(1 if r["moe"] else 0)
            ax.scatter(
                [x],
                [y],
                s=28,
                marker="^" if r["reasoning"] else "o",
                facecolors="none" if _is_quantized(r) else colour,
                edgecolors=colour,
                linewidths=1.2,
                zorder=3,
            )
        front = pareto_front(list(zip(xs, ys, strict=True)))
        ax.step(
            [xs[i] for i in front],
            [ys[i] for i in front],
            where="post",
            color="0.35",
            lw=1,
            ls="--",
            zorder=2,
        )
        ax.set_xscale("log")
        _pad_log(ax, xs, "x")
        _pad_linear(ax, ys)
        metric = {r["score_metric"] for r in usable if r.get("score_metric")}
        ax.set_xlabel(f"{FAMILY_WORDS[family]}: Wh per question (log scale)")
        ax.set_ylabel(f"score ({', '.join(sorted(metric)) or 'metric not recorded'})")
        plural = "s" if len(usable) != 1 else ""
        ax.set_title(f"{bench}: score against energy per question ({len(usable)} model{plural})")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(handles=_class_legend(), loc="best", fontsize=7, framealpha=0.85)
        place_labels(ax, xs, ys, [short_model(r["model"]) for r in usable])
        files = save(fig, out_dir, name)
        results.append(FigureResult(name, caption, columns, files=files, notes=notes))
    return results


def _class_legend() -> list[Line2D]:
    def handle(label: str, colour: str, marker: str, hollow: bool = False) -> Line2D:
        return Line2D(
            [],
            [],
            ls="",
            marker=marker,
            color=colour,
            markerfacecolor="none" if hollow else colour,
            label=label,
        )

    return [
        handle("dense", _colour(0), "o"),
        handle("MoE", _colour(1), "o"),
        handle("reasoning", "0.3", "^"),
        handle("quantized", "0.3", "o", hollow=True),
        Line2D([], [], color="0.35", lw=1, ls="--", label="Pareto front"),
    ]


def _pad_log(ax: Any, values: Sequence[float], axis: str) -> None:
    lo, hi = min(values), max(values)
    span = math.log10(hi / lo) if hi > lo else 1.0
    pad = 10 ** (0.12 * span + 0.05)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo / pad, hi * pad)


def _pad_linear(ax: Any, values: Sequence[float]) -> None:
    lo, hi = min(values), max(values)
    pad = 0.1 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 0.05)
    ax.set_ylim(lo - pad, hi + pad)


# --- energy against time and tokens -----------------------------------------------------------


def energy_vs_time_tokens(rows: Sequence[Row], out_dir: Path, family: str) -> FigureResult:
    """Every cell: inference energy against generation time and against output tokens."""
    energy = f"{family}_inference_energy_j"
    columns = (energy, "inference_duration_s", "output_tokens", "gpus")
    name = "energy_vs_time_tokens"
    caption = (
        f"Every cell of the table: {FAMILY_WORDS[family]} over the generation window (column "
        f"{energy}, in Wh) against the generation time (inference_duration_s, left) and against "
        "the output tokens (output_tokens, right), both axes log scale, coloured by the job's "
        "GPU count (gpus). r is the correlation of the logarithms: near 1, energy follows "
        "time (or tokens) closely."
    )
    panels = []
    for x_col, label in (
        ("inference_duration_s", "generation time, s (log)"),
        ("output_tokens", "output tokens (log)"),
    ):
        pts = [
            (r[x_col], r[energy] / 3600.0, r["gpus"])
            for r in rows
            if r.get(x_col) and r.get(energy) and r[x_col] > 0 and r[energy] > 0
        ]
        panels.append((x_col, label, pts))
    if all(len(p[2]) < 2 for p in panels):
        return FigureResult(
            name,
            caption,
            columns,
            skipped=f"fewer than 2 cells with {energy} and a time or token count",
        )
    gpu_counts = sorted({g for _, _, pts in panels for *_, g in pts if g is not None})
    fig = new_figure(10, 4.4)
    axes = fig.subplots(1, 2)
    for ax, (x_col, label, pts) in zip(axes, panels, strict=True):
        if len(pts) < 2:
            ax.text(0.5, 0.5, f"no {x_col}", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for k, g in enumerate(gpu_counts):
            sel = [(x, y) for x, y, gg in pts if gg == g]
            ax.scatter(
                [p[0] for p in sel],
                [p[1] for p in sel],
                s=16,
                color=_colour(k),
                label=f"{g} GPU{'s' if g != 1 else ''}",
                alpha=0.85,
                zorder=3,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        r = _pearson_log([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(f"{len(pts)} cells" + (f", r = {r:.2f}" if r is not None else ""))
        ax.set_xlabel(label)
        ax.set_ylabel(f"{FAMILY_WORDS[family]}: Wh (log)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, title="GPUs of the job", title_fontsize=7)
    return FigureResult(name, caption, columns, files=save(fig, out_dir, name))


# --- normalised energy against parameters -------------------------------------------------------


def energy_vs_params(rows: Sequence[Row], out_dir: Path, family: str) -> FigureResult:
    """Energy per question min-max normalised per benchmark, against total and active
    parameters."""
    energy = _energy(family)
    columns = ("benchmark", energy, "total_params_b", "active_params_b")
    name = "energy_vs_params"
    caption = (
        f"{FAMILY_WORDS[family]} per question (column {energy}) normalised per benchmark to "
        "0 (the benchmark's least energy per question) ... 1 (its most), against total "
        "parameters (total_params_b, left) and active parameters per token (active_params_b, "
        f"right), billions, log scale; {STUDY_VIEW}. Normalising removes the benchmarks' "
        "different lengths so that models can be compared across them."
    )
    by_bench: dict[str, list[Row]] = defaultdict(list)
    for row in study_rows(rows):
        if row[energy] is not None:
            by_bench[row["benchmark"]].append(row)
    notes, norm = [], []
    for bench in sorted(by_bench):
        values = [r[energy] for r in by_bench[bench]]
        lo, hi = min(values), max(values)
        if len(values) < 2 or hi == lo:
            notes.append(f"{bench} left out: fewer than two different energies to normalise")
            continue
        norm += [(bench, r, (r[energy] - lo) / (hi - lo)) for r in by_bench[bench]]
    if not norm:
        return FigureResult(
            name,
            caption,
            columns,
            skipped="no benchmark with two or more different energies per question",
            notes=tuple(notes),
        )
    benches = sorted({b for b, _, _ in norm})
    fig = new_figure(10, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, label in (
        (axes[0], "total_params_b", "total parameters, billions (log)"),
        (axes[1], "active_params_b", "active parameters per token, billions (log)"),
    ):
        for k, bench in enumerate(benches):
            sel = [(r[col], v) for b, r, v in norm if b == bench and r.get(col)]
            ax.scatter(
                [p[0] for p in sel],
                [p[1] for p in sel],
                s=18,
                color=_colour(k),
                marker=BENCH_MARKERS[k % len(BENCH_MARKERS)],
                label=bench,
                alpha=0.85,
                zorder=3,
            )
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("energy per question, min-max per benchmark")
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].legend(fontsize=7, loc="best")
    return FigureResult(name, caption, columns, files=save(fig, out_dir, name), notes=tuple(notes))


# --- paired comparisons --------------------------------------------------------------------------


def _prefix(a: str, b: str) -> int:
    """Length of the common leading characters of two names, case ignored."""
    n = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        n += 1
    return n


def _factor(row: Row, factor: str) -> bool:
    return _is_quantized(row) if factor == "quantized" else bool(row[factor])


def match_models(rows: Sequence[Row], factor: str) -> list[tuple[str, str]]:
    """(with, without) model pairs for ``factor`` (reasoning, quantized, moe): for each model
    with the factor, the model without it that ran at least one benchmark in common, agrees on
    the two other factors and whose total parameters are within ``MATCH_TOLERANCE``; the
    closest in size wins, then the longest common name prefix, then the name."""
    models: dict[str, Row] = {}
    benches: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        models.setdefault(r["model"], r)
        benches[r["model"]].add(r["benchmark"])
    others = [f for f in ("reasoning", "quantized", "moe") if f != factor]
    pairs = []
    for name in sorted(models):
        a = models[name]
        if not _factor(a, factor):
            continue
        best = None
        for other in sorted(models):
            b = models[other]
            if _factor(b, factor) or not benches[name] & benches[other]:
                continue
            if any(_factor(a, f) != _factor(b, f) for f in others):
                continue
            size = abs(a["total_params_b"] - b["total_params_b"]) / max(
                a["total_params_b"], b["total_params_b"]
            )
            if size > MATCH_TOLERANCE[factor]:
                continue
            key = (size, -_prefix(name, other), other)
            if best is None or key < best[0]:
                best = (key, other)
        if best is not None:
            pairs.append((name, best[1]))
    return pairs


def paired(
    rows: Sequence[Row],
    out_dir: Path,
    family: str,
    pairs: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[FigureResult]:
    """Reasoning vs not, quantized vs not, MoE vs dense, temperature 0 vs 0.7."""
    view = study_rows(rows)
    out = []
    for factor in ("reasoning", "quantized", "moe"):
        chosen = list(pairs[factor]) if pairs and factor in pairs else match_models(view, factor)
        by_key = {(r["model"], r["benchmark"]): r for r in view}
        points = [
            (
                f"{short_model(a, 24)} vs {short_model(b, 24)}",
                bench,
                by_key[(a, bench)],
                by_key[(b, bench)],
            )
            for a, b in chosen
            for bench in sorted({r["benchmark"] for r in view})
            if (a, bench) in by_key and (b, bench) in by_key
        ]
        with_, without = FACTOR_WORDS[factor]
        how = (
            "given pairs"
            if pairs and factor in pairs
            else f"pairs matched on the other two factors and total parameters within "
            f"{MATCH_TOLERANCE[factor]:.0%}, closest size first"
        )
        out.append(
            _paired_figure(
                f"paired__{factor}",
                points,
                out_dir,
                family,
                with_,
                without,
                f"{with_} against {without}, same benchmark ({how}; {STUDY_VIEW})",
                (factor if factor != "quantized" else "weight_bits", "model", "total_params_b"),
            )
        )
    # temperature 0 vs 0.7: the same model, benchmark and max_connections
    low, high = TEMPERATURES
    cells = {(r["model"], r["benchmark"], r["max_connections"], r["temperature"]): r for r in rows}
    points = [
        ("", b, cells[(m, b, c, high)], r)
        for (m, b, c, t), r in sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0])))
        if t == low and (m, b, c, high) in cells
    ]
    out.append(
        _paired_figure(
            "paired__temperature",
            points,
            out_dir,
            family,
            f"temperature {high:g}",
            f"temperature {low:g}",
            f"temperature {high:g} against {low:g}, same model, benchmark and max_connections",
            ("temperature", "max_connections"),
            colour_by_benchmark=True,
        )
    )
    return out


def _paired_figure(
    name: str,
    points: list[tuple[str, str, Row, Row]],
    out_dir: Path,
    family: str,
    with_: str,
    without: str,
    what: str,
    extra_columns: tuple[str, ...],
    colour_by_benchmark: bool = False,
) -> FigureResult:
    energy = _energy(family)
    columns = ("benchmark", energy, "score", *extra_columns)
    caption = (
        f"Paired comparison, {what}. Left: {FAMILY_WORDS[family]} per question (column "
        f"{energy}) with ({with_}, y) against without ({without}, x), log scales; above the "
        "diagonal the factor costs energy, below it saves energy; dotted lines mark 2x and "
        "0.5x. Right: score with minus score without (column score, in each benchmark's own "
        "metric), one row per benchmark."
    )
    usable = [p for p in points if p[2][energy] is not None and p[3][energy] is not None]
    if not usable:
        why = "no pair in this table" if not points else f"no pair with {energy} on both sides"
        return FigureResult(name, caption, columns, skipped=why)
    ratios = sorted(p[2][energy] / p[3][energy] for p in usable)
    median = (
        ratios[len(ratios) // 2]
        if len(ratios) % 2
        else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
    )
    benches = sorted({p[1] for p in usable})
    labels = sorted({p[0] for p in usable})
    fig = new_figure(11, 4.8)
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    for label, bench, a, b in usable:
        k = benches.index(bench)
        colour = _colour(k if colour_by_benchmark else labels.index(label))
        marker = "o" if colour_by_benchmark else BENCH_MARKERS[k % len(BENCH_MARKERS)]
        left.scatter([b[energy]], [a[energy]], s=24, color=colour, marker=marker, zorder=3)
    xs = [p[3][energy] for p in usable] + [p[2][energy] for p in usable]
    lo, hi = min(xs) / 1.5, max(xs) * 1.5
    for factor, style in ((1, "-"), (2, ":"), (0.5, ":")):
        left.plot([lo, hi], [lo * factor, hi * factor], color="0.5", lw=0.8, ls=style, zorder=1)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlim(lo, hi)
    left.set_ylim(lo, hi)
    left.set_xlabel(f"without ({without}): Wh per question (log)")
    left.set_ylabel(f"with ({with_}): Wh per question (log)")
    left.set_title(f"{len(usable)} pairs; median energy ratio {median:.2f}x", fontsize=9)
    left.grid(True, which="both", alpha=0.25)
    scored = [p for p in usable if p[2]["score"] is not None and p[3]["score"] is not None]
    for i, (label, bench, a, b) in enumerate(scored):
        k = benches.index(bench)
        colour = _colour(k if colour_by_benchmark else labels.index(label))
        jitter = ((i * 7919) % 11 - 5) * 0.03  # deterministic spread within a row
        right.scatter(
            [a["score"] - b["score"]],
            [k + jitter],
            s=20,
            color=colour,
            zorder=3,
            marker="o" if colour_by_benchmark else BENCH_MARKERS[k % len(BENCH_MARKERS)],
        )
    right.axvline(0, color="0.5", lw=0.8)
    right.set_yticks(range(len(benches)), benches, fontsize=8)
    right.set_ylim(-0.6, len(benches) - 0.4)
    right.set_xlabel("score with - score without (benchmark's own metric)")
    right.grid(True, axis="x", alpha=0.25)
    if colour_by_benchmark:
        handles = [
            Line2D([], [], ls="", marker="o", color=_colour(k), label=b)
            for k, b in enumerate(benches)
        ]
    else:
        handles = [
            Line2D([], [], ls="", marker="o", color=_colour(i), label=lab)
            for i, lab in enumerate(labels)
        ] + [
            Line2D(
                [], [], ls="", marker=BENCH_MARKERS[k % len(BENCH_MARKERS)], color="0.4", label=b
            )
            for k, b in enumerate(benches)
        ]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False)
    fig.suptitle(f"{with_} vs {without}", fontsize=11)
    notes = (
        (f"{len(points) - len(usable)} pair(s) without energy left out",)
        if len(points) > len(usable)
        else ()
    )
    return FigureResult(name, caption, columns, files=save(fig, out_dir, name), notes=notes)


# --- max_connections ----------------------------------------------------------------------------


def max_connections(rows: Sequence[Row], out_dir: Path, family: str) -> FigureResult:
    """Per (model, benchmark, temperature) with several max_connections: duration and energy
    per question against max_connections."""
    energy = _energy(family)
    columns = ("max_connections", "inference_duration_s", energy, "model", "benchmark")
    name = "max_connections"
    caption = (
        "Inspect's max_connections (concurrent requests, log scale) against the generation "
        f"time (inference_duration_s, left) and {FAMILY_WORDS[family]} per question (column "
        f"{energy}, right), log scales. One line per (model, benchmark, temperature) run at "
        "several max_connections, coloured by benchmark. The study kept, per (model, "
        "benchmark), the max_connections with the shortest generation."
    )
    groups: dict[tuple[str, str, float], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["benchmark"], r["temperature"])].append(r)
    lines = {
        k: sorted(g, key=lambda r: r["max_connections"])
        for k, g in sorted(groups.items())
        if len({r["max_connections"] for r in g}) > 1
    }
    if not lines:
        return FigureResult(
            name,
            caption,
            columns,
            skipped="every (model, benchmark, temperature) ran at one max_connections only",
        )
    benches = sorted({k[1] for k in lines})
    fig = new_figure(10, 4.4)
    axes = fig.subplots(1, 2)
    for ax, col, label in (
        (axes[0], "inference_duration_s", "generation time, s (log)"),
        (axes[1], energy, "Wh per question (log)"),
    ):
        for (_, bench, _), group in lines.items():
            pts = [(r["max_connections"], r[col]) for r in group if r[col] is not None]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                ms=3,
                lw=0.8,
                color=_colour(benches.index(bench)),
                alpha=0.75,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("max_connections (log)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.25)
    fig.legend(
        handles=[Line2D([], [], color=_colour(k), label=b) for k, b in enumerate(benches)],
        loc="outside right center",
        fontsize=7,
        frameon=False,
    )
    fig.suptitle(f"{len(lines)} (model, benchmark, temperature) series", fontsize=10)
    return FigureResult(name, caption, columns, files=save(fig, out_dir, name))
