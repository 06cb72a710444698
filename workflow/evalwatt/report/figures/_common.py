"""What every figure shares: the Agg canvas, deterministic files, the energy family, the
Pareto front and label placement."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evalwatt.base.atomic import atomic_path
from evalwatt.base.errors import UserError

FAMILIES = ("gpu", "cpu", "cpu_est")
FAMILY_WORDS = {
    "gpu": "GPU energy (NVML, measured)",
    "cpu": "CPU package energy (RAPL, measured)",
    "cpu_est": "CPU energy (CPU-time model, ESTIMATE)",
}
DPI = 150
FORMATS = ("png", "svg")
# Matplotlib writes a creation date and random SVG ids unless told not to.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
}
# Colours of the Okabe-Ito palette (readable with colour-blindness), in a fixed order.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)


@dataclass(frozen=True)
class FigureResult:
    """One figure: its files, or why it was not drawn. ``columns`` are the table columns (or
    trace fields) it reads; ``caption`` says what it shows, in words a reader can check."""

    name: str
    caption: str
    columns: tuple[str, ...]
    files: tuple[Path, ...] = ()
    skipped: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "caption": self.caption,
            "columns": list(self.columns),
            "files": [str(p) for p in self.files],
            "skipped": self.skipped,
            "notes": list(self.notes),
        }


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas, never through pyplot (no global state, no GUI backend)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_dir: Path | str, name: str) -> tuple[Path, ...]:
    """Write ``name``.png and ``name``.svg atomically; same input, same bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with _deterministic():
        for fmt in FORMATS:
            path = out_dir / f"{name}.{fmt}"
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                fig.savefig(fh, format=fmt, metadata=_METADATA[fmt])
            paths.append(path)
    return tuple(paths)


class _deterministic:
    """rcParams that make SVG output reproducible (fixed id salt, text as paths)."""

    def __enter__(self) -> None:
        self._saved = {k: rcParams[k] for k in ("svg.hashsalt", "svg.fonttype")}
        rcParams["svg.hashsalt"] = "evalwatt"
        rcParams["svg.fonttype"] = "path"

    def __exit__(self, *exc: object) -> None:
        rcParams.update(self._saved)  # type: ignore[arg-type]


def pick_family(rows: Sequence[dict[str, Any]], family: str | None) -> str:
    """The energy family to draw: the one asked for, else the first of gpu, cpu, cpu_est
    with a value in ``<family>_energy_per_question_wh``."""
    if family is not None:
        if family not in FAMILIES:
            raise UserError(f"energy family {family!r} is not one of {', '.join(FAMILIES)}")
        return family
    for name in FAMILIES:
        if any(r.get(f"{name}_energy_per_question_wh") is not None for r in rows):
            return name
    return "gpu"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal x (energy) with
    higher-or-equal y (score), one of them strictly. Sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def place_labels(
    ax: Any,
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    *,
    fontsize: float = 6.5,
) -> list[Any]:
    """Label points so that no two labels overlap each other or cover a point.

    A greedy search (deterministic): points are taken left to right, and each label tries
    positions on rings of growing radius around its point (right, left, above, below, then the
    diagonals) and takes the first whose box is inside the axes and clear of the labels placed
    so far and of every point's marker. A label moved away from its point gets a thin leader
    line. If no position is clear within the largest ring, the one with the least overlap is
    taken. Call after the axes' limits and scales are final."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()  # settle the constrained layout before measuring
    to_px = ax.transData.transform
    axes_box = ax.get_window_extent(renderer)
    pts = [tuple(to_px((x, y))) for x, y in zip(xs, ys, strict=True)]
    marker = 4.0 * DPI / 72  # half-size of a marker's keep-out box, pixels
    point_boxes = [(px - marker, py - marker, px + marker, py + marker) for px, py in pts]
    placed: list[tuple[float, float, float, float]] = []
    texts = []
    pt_to_px = DPI / 72.0
    order = sorted(range(len(labels)), key=lambda i: (pts[i][0], pts[i][1]))
    for i in order:
        probe = ax.text(0, 0, labels[i], fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width + 2, extent.height + 2
        px, py = pts[i]
        best: tuple[float, tuple[float, float, float, float], float, float] | None = None
        for dx, dy in _candidates(w, h, marker):
            x0 = px + dx - (w if dx < 0 else 0 if dx > 0 else w / 2)
            y0 = py + dy - (h if dy < 0 else 0 if dy > 0 else h / 2)
            box = (x0, y0, x0 + w, y0 + h)
            inside = (
                box[0] >= axes_box.x0
                and box[2] <= axes_box.x1
                and box[1] >= axes_box.y0
                and box[3] <= axes_box.y1
            )
            cost = sum(_overlap(box, b) for b in placed) + sum(
                _overlap(box, b) for b in point_boxes
            )
            if not inside:
                cost += w * h
            if cost == 0:
                best = (0.0, box, dx, dy)
                break
            if best is None or cost < best[0]:
                best = (cost, box, dx, dy)
        assert best is not None
        _, box, dx, dy = best
        placed.append(box)
        centre = ((box[0] + box[2]) / 2 - px, (box[1] + box[3]) / 2 - py)
        far = math.hypot(dx, dy) > 2.5 * marker + max(w, h) / 2
        texts.append(
            ax.annotate(
                labels[i],
                (xs[i], ys[i]),
                xytext=(centre[0] / pt_to_px, centre[1] / pt_to_px),
                textcoords="offset points",
                ha="center",
                va="center",
                fontsize=fontsize,
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if far else None,
                annotation_clip=False,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
            )
        )
    return texts


def _candidates(w: float, h: float, marker: float) -> Iterable[tuple[float, float]]:
    gap = marker + 1
    for ring in range(12):
        r = ring * (h + 2)
        yield gap + r, 0.0  # right
        yield -gap - r, 0.0  # left
        yield 0.0, gap + r  # above
        yield 0.0, -gap - r  # below
        for sx, sy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            yield sx * (gap + r), sy * (gap + r)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


def boxes_overlap(texts: Sequence[Any]) -> list[tuple[str, str]]:
    """Pairs of labels whose drawn boxes overlap (for tests and checks)."""
    renderer = texts[0].figure.canvas.get_renderer() if texts else None
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    out = []
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1 :]:
            if _overlap((a.x0, a.y0, a.x1, a.y1), (b.x0, b.y0, b.x1, b.y1)) > 0:
                out.append((ta, tb))
    return out


def short_model(name: str, limit: int = 30) -> str:
    """A model name short enough to label a point (the organisation prefix dropped)."""
    name = name.split("/")[-1]
    return name if len(name) <= limit else name[: limit - 1] + "…"
