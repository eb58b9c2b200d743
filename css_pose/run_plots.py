"""A run's ``csv/metrics.csv`` read into columns (:func:`read_metrics`, tolerant of half-written
files) and drawn as PNG plots, one figure per metric group (:func:`draw_plots`); used by the
HTML report (``css-pose report``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

AXIS_COLUMNS = ("step", "epoch")


GROUP_ORDER = ("train", "val", "probe", "probe_init", "test", "lr")  # probe_init, lr: older runs


PROBE_FEATURES = ("z_v", "z_i", "backbone")


@dataclass
class Metrics:
    """``csv/metrics.csv`` as columns: ``values[name]`` holds one float per kept row (NaN = not
    logged in that row), ``axis`` names the x column (step, epoch or row number), ``notes`` say
    what could not be parsed."""

    columns: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    axis: str = "row"
    notes: list[str] = field(default_factory=list)

    def x(self) -> list[float]:
        if self.axis == "row":
            return [float(i) for i in range(len(next(iter(self.values.values()), [])))]
        return self.values[self.axis]

    def series(self, name: str) -> tuple[list[float], list[float]]:
        """The logged points of one column, sorted by x; where x repeats (a resumed run logs the
        steps after its checkpoint again) the later row wins."""
        points: dict[float, float] = {}
        for x, y in zip(self.x(), self.values[name]):
            if not (math.isnan(x) or math.isnan(y)):
                points[x] = y
        xs = sorted(points)
        return xs, [points[x] for x in xs]

    def metric_columns(self) -> list[str]:
        return [c for c in self.columns if c not in AXIS_COLUMNS]


def read_metrics(path: Path) -> Metrics:
    """Read a Lightning ``metrics.csv``: a header, then sparse rows (each logging call fills only
    its own columns). Rows with the wrong number of fields are skipped and cells that are not
    numbers count as missing; both are listed in ``Metrics.notes``, so a half-written file from a
    crashed run still gives plots."""
    m = Metrics()
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        m.notes.append(f"could not read {path.name}: {e}")
        return m
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        m.notes.append(f"{path.name} is empty: no metrics to plot")
        return m
    header = [c.strip() for c in rows[0]]
    m.columns = header
    m.values = {c: [] for c in header}
    bad_rows, bad_cells = [], {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            bad_rows.append(line_no)
            continue
        if [c.strip() for c in row] == header:  # a header repeated by a resumed writer
            continue
        for name, cell in zip(header, row):
            value = float("nan")
            if cell.strip():
                try:
                    value = float(cell)
                except ValueError:
                    bad_cells.setdefault(name, []).append(line_no)
            m.values[name].append(value)
    if len(rows) == 1:
        m.notes.append(f"{path.name} has a header but no rows yet")
    if bad_rows:
        m.notes.append(
            f"{path.name}: skipped {len(bad_rows)} row(s) with a field count other than the "
            f"header's {len(header)} (line {line_list(bad_rows)})"
        )
    for name, lines in bad_cells.items():
        m.notes.append(
            f"{path.name}: column {name}: {len(lines)} value(s) that are not numbers were "
            f"left out (line {line_list(lines)})"
        )
    for axis in AXIS_COLUMNS:
        if axis in m.values and any(not math.isnan(v) for v in m.values[axis]):
            m.axis = axis
            break
    return m


def line_list(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f", … {len(numbers) - limit} more" if len(numbers) > limit else "")


def group_of(column: str) -> str:
    """The metric group a CSV column belongs to: the part before the first ``/``
    (``train/loss`` -> ``train``), ``lr`` for learning-rate monitors (``lr-AdamW``), else ``other``."""
    if "/" in column:
        return column.split("/", 1)[0]
    if column.startswith("lr"):
        return "lr"
    return "other"


def group_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


# --- plots ----------------------------------------------------------------------------------------
@dataclass
class Plot:
    file: str
    title: str
    columns: list[str]


def _figure(n_axes: int, cols: int = 3):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(cols, n_axes)
    rows = math.ceil(n_axes / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_axes)]
    return fig, axes


def _draw(ax, xs: list[float], ys: list[float], label: str | None = None) -> None:
    ax.plot(xs, ys, marker="o" if len(xs) <= 12 else None, markersize=3, linewidth=1.4, label=label)


def _style(ax, title: str, xlabel: str, legend: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "metrics"


def draw_plots(metrics: Metrics, out_dir: Path) -> list[Plot]:
    """Write the PNG plots of ``metrics`` into ``out_dir``; return them in display order.

    First the overview plots (train vs val total loss; probe MPJPE of z_v, z_i and backbone
    features, the initial probe at step 0 included), then one figure per group with one panel per
    column that has at least two logged points.
    """
    plots = []
    xlabel = metrics.axis
    names = metrics.metric_columns()

    losses = [c for c in ("train/loss", "val/loss") if c in names]
    losses = [c for c in losses if len(metrics.series(c)[0]) >= 2]
    if len(losses) == 2:  # with one of them, its group's plot already shows it
        fig, (ax,) = _figure(1)
        for c in losses:
            _draw(ax, *metrics.series(c), label=c)
        _style(ax, "total loss", xlabel, legend=True)
        plots.append(_save(fig, out_dir, "plot_loss.png", "Total loss", losses))

    probe_lines = []
    for feature in PROBE_FEATURES:
        points: dict[float, float] = {}
        used = []
        for c in (
            f"probe/init_{feature}_mpjpe",
            f"probe_init/{feature}_mpjpe",  # runs before the rename
            f"probe/{feature}_mpjpe",
        ):
            if c in names:
                points.update(zip(*metrics.series(c)))
                used.append(c)
        if len(points) >= 2:
            probe_lines.append((feature, sorted(points.items()), used))
    if {"z_v", "z_i"} <= {f for f, _, _ in probe_lines}:
        fig, (ax,) = _figure(1)
        for feature, pts, _ in probe_lines:
            _draw(ax, [p[0] for p in pts], [p[1] for p in pts], label=feature)
        _style(ax, "probe MPJPE (mm, lower is better)", xlabel, legend=True)
        used = [c for _, _, cs in probe_lines for c in cs]
        title = "Probe MPJPE: z_v vs z_i"
        plots.append(_save(fig, out_dir, "plot_probe_mpjpe.png", title, used))

    groups: dict[str, list[str]] = {}
    for c in names:
        if len(metrics.series(c)[0]) >= 2:
            groups.setdefault(group_of(c), []).append(c)
    for group in sorted(groups, key=group_key):
        columns = groups[group]
        fig, axes = _figure(len(columns))
        for ax, c in zip(axes, columns):
            _draw(ax, *metrics.series(c))
            _style(ax, c, xlabel)
        plots.append(_save(fig, out_dir, f"plot_{slug(group)}.png", f"{group}/*", columns))
    return plots


def _save(fig, out_dir: Path, file: str, title: str, columns: list[str]) -> Plot:
    fig.savefig(out_dir / file, format="png")
    return Plot(file, title, columns)


def loss_only_plot(train_loss: list, out_dir: Path) -> list[Plot]:
    """Without a usable CSV, plot the per-epoch train loss that result.json keeps."""
    ys = [float(v) for v in train_loss if isinstance(v, int | float)]
    if len(ys) < 2:
        return []
    fig, (ax,) = _figure(1)
    _draw(ax, list(range(len(ys))), ys)
    _style(ax, "train loss (result.json)", "epoch")
    return [_save(fig, out_dir, "plot_loss.png", "Train loss", ["train_loss"])]
