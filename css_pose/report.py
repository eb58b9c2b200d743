"""A static HTML report of one run folder, for readers without a W&B account.

``css-pose report RUN_DIR`` writes ``RUN_DIR/report/index.html`` with a summary table, the
configuration, one PNG plot per metric group of ``csv/metrics.csv`` and a copy of every image under
``images/``, so the report folder can be zipped or served as it is (no JS frameworks, no network).

Run folders come from train.py (``summary.json``, ``config.yaml``, ``csv/``, ``images/``),
linear_probe.py (``result.json``, ``csv/``) and train_head.py (``result.json``, ``csv/``,
``images/``).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import yaml

RUN_FILES = ("csv/metrics.csv", "summary.json", "result.json")
AXIS_COLUMNS = ("step", "epoch")
GROUP_ORDER = ("train", "val", "probe", "probe_init", "test", "lr")  # probe_init, lr: older runs
PROBE_FEATURES = ("z_v", "z_i", "backbone")

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em;
       color: #1d2330; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #d8dce4; margin-top: 2em; }
.sub { color: #5a6275; margin-top: 0; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #d8dce4; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f4f8; }
code, pre { font-family: ui-monospace, monospace; font-size: .92em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
.notes { background: #fff7e0; border-left: 4px solid #e0a800; padding: .5em 1em; }
figure { margin: 1em 0; } figcaption { color: #5a6275; font-size: .9em; }
img { max-width: 100%; height: auto; border: 1px solid #e3e6ec; image-rendering: pixelated; }
.plots img { image-rendering: auto; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1em; }
"""

# Lets a headless browser check that every image decoded (the render test reads these attributes).
_LOAD_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesOk = imgs.filter(function (i) {
    return i.complete && i.naturalWidth > 0;
  }).length;
  document.body.dataset.imagesTotal = imgs.length;
});
"""


class ReportError(ValueError):
    """The folder is not a run folder css_pose wrote (the message names it and what was expected)."""


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
            f"header's {len(header)} (line {_lines(bad_rows)})"
        )
    for name, lines in bad_cells.items():
        m.notes.append(
            f"{path.name}: column {name}: {len(lines)} value(s) that are not numbers were "
            f"left out (line {_lines(lines)})"
        )
    for axis in AXIS_COLUMNS:
        if axis in m.values and any(not math.isnan(v) for v in m.values[axis]):
            m.axis = axis
            break
    return m


def _lines(numbers: list[int], limit: int = 8) -> str:
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


def _group_key(group: str) -> tuple[int, str]:
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


def _slug(name: str) -> str:
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
    for group in sorted(groups, key=_group_key):
        columns = groups[group]
        fig, axes = _figure(len(columns))
        for ax, c in zip(axes, columns):
            _draw(ax, *metrics.series(c))
            _style(ax, c, xlabel)
        plots.append(_save(fig, out_dir, f"plot_{_slug(group)}.png", f"{group}/*", columns))
    return plots


def _save(fig, out_dir: Path, file: str, title: str, columns: list[str]) -> Plot:
    fig.savefig(out_dir / file, format="png")
    return Plot(file, title, columns)


def _loss_only_plot(train_loss: list, out_dir: Path) -> list[Plot]:
    """Without a usable CSV, plot the per-epoch train loss that result.json keeps."""
    ys = [float(v) for v in train_loss if isinstance(v, int | float)]
    if len(ys) < 2:
        return []
    fig, (ax,) = _figure(1)
    _draw(ax, list(range(len(ys))), ys)
    _style(ax, "train loss (result.json)", "epoch")
    return [_save(fig, out_dir, "plot_loss.png", "Train loss", ["train_loss"])]


# --- run folder -----------------------------------------------------------------------------------
def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        notes.append(f"could not parse {path.name}: {e}")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name} does not hold a JSON object; left out")
        return None
    return data


def _has_run_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in RUN_FILES)


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`ReportError` unless ``run_dir`` holds at least one of :data:`RUN_FILES`."""
    expected = (
        "expected csv/metrics.csv, summary.json or result.json "
        "(written by train.py, linear_probe.py, train_head.py)"
    )
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise ReportError(f"{run_dir} {what}: {expected}")
    if _has_run_files(run_dir):
        return
    runs = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and _has_run_files(p))
    hint = ""
    if runs:
        shown = ", ".join(runs[:5]) + (", …" if len(runs) > 5 else "")
        hint = f"; its subfolders {shown} are run folders"
    raise ReportError(f"{run_dir} is not a css_pose run folder: {expected}{hint}")


def run_kind(run_dir: Path, summary: dict | None, result: dict | None) -> str:
    """Which script wrote the folder, in words."""
    if result is not None:
        config = result.get("config") if isinstance(result.get("config"), dict) else {}
        if "head" in config:
            return "2D pose head (train_head.py)"
        if "probe" in config or "feature" in config:
            return "probe (linear_probe.py)"
        return "evaluation (result.json)"
    if summary is not None or (run_dir / "config.yaml").is_file():
        return "pretraining (train.py)"
    return "run with metrics only (csv/metrics.csv)"


def _format(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.5g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int | float) for v in value) and len(value) > 6:
            return f"{len(value)} values: {_format(value[0])} → {_format(value[-1])}"
        if len(value) > 6:
            return f"{len(value)} items: {', '.join(map(str, value[:3]))}, …"
        return ", ".join(_format(v) for v in value)
    return str(value)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _is_num(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(_format(v))}</td>'
            if _is_num(v)
            else f"<td>{html.escape(_format(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _summary_html(summary: dict | None, result: dict | None) -> str:
    parts = []
    if summary is not None:
        initial, final = summary.get("probe_initial"), summary.get("probe_final")
        if isinstance(initial, dict) or isinstance(final, dict):
            initial, final = initial or {}, final or {}
            keys = list(dict.fromkeys([*initial, *final]))
            rows = []
            for k in keys:
                a, b = initial.get(k), final.get(k)
                change = b - a if _is_num(a) and _is_num(b) else ""
                rows.append([k, "" if a is None else a, "" if b is None else b, change])
            parts.append("<h3>Online probe (before and after pretraining)</h3>")
            parts.append(_table(["metric", "initial", "final", "change"], rows))
        rest = {k: v for k, v in summary.items() if k not in ("probe_initial", "probe_final")}
        parts.append("<h3>Run (summary.json)</h3>")
        parts.append(_table(["key", "value"], [list(r) for r in _flatten(rest)]))
    if result is not None:
        metrics = result.get("metrics")
        if isinstance(metrics, dict):
            parts.append("<h3>Test metrics (result.json)</h3>")
            parts.append(_table(["metric", "value"], [list(r) for r in _flatten(metrics)]))
        rest = {k: v for k, v in result.items() if k not in ("metrics", "config")}
        parts.append("<h3>Run (result.json)</h3>")
        parts.append(_table(["key", "value"], [list(r) for r in _flatten(rest)]))
    return "\n".join(parts)


def _config_html(run_dir: Path, result: dict | None) -> str:
    def text_of(name: str) -> str:
        return (run_dir / name).read_text(errors="replace")

    sources = []
    if (run_dir / "overrides.json").is_file():
        sources.append(("overrides.json", text_of("overrides.json")))
    if (run_dir / "config.yaml").is_file():
        sources.append(("config.yaml", text_of("config.yaml")))
    elif result is not None and isinstance(result.get("config"), dict):
        text = yaml.safe_dump(result["config"], sort_keys=False, allow_unicode=True)
        sources.append(("config (from result.json)", text))
    elif (run_dir / "csv/hparams.yaml").is_file():
        sources.append(("csv/hparams.yaml", text_of("csv/hparams.yaml")))
    if not sources:
        return "<p>No configuration file in this run folder.</p>"
    return "\n".join(
        f"<details{' open' if name == 'overrides.json' else ''}>"
        f"<summary>{html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>"
        for name, text in sources
    )


def _last_values_html(metrics: Metrics) -> str:
    rows = []
    x = metrics.x() if metrics.values else []
    for c in sorted(metrics.metric_columns(), key=lambda c: (_group_key(group_of(c)), c)):
        logged = [(xi, v) for xi, v in zip(x, metrics.values[c]) if not math.isnan(v)]
        if logged:
            rows.append([c, logged[-1][1], logged[-1][0], len(logged)])
        else:
            rows.append([c, "(never logged)", "", 0])
    if not rows:
        return ""
    return _table(["column", "last value", f"at {metrics.axis}", "points"], rows)


def _src(relative: str) -> str:
    return html.escape(quote(relative), quote=True)


def _copy_images(run_dir: Path, report_dir: Path) -> list[str]:
    """Copy ``RUN_DIR/images/**/*.png`` to ``report_dir/images/``; return the paths relative to
    ``report_dir``."""
    src_root = run_dir / "images"
    if not src_root.is_dir():
        return []
    copied = []
    for src in sorted(src_root.rglob("*.png")):
        rel = src.relative_to(src_root)
        dst = report_dir / "images" / rel
        if dst.resolve() != src.resolve():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        copied.append((Path("images") / rel).as_posix())
    return copied


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write a self-contained HTML report of one run folder.

    Args:
        run_dir: a folder written by train.py, linear_probe.py or train_head.py (it holds
            csv/metrics.csv, summary.json or result.json).
        out: the HTML file to write (an existing folder means ``out/index.html``); default
            ``RUN_DIR/report/index.html``. The plots (``plot_<group>.png``) and a copy of
            ``RUN_DIR/images/`` go into the same folder.
    Returns:
        The path of the HTML file.
    Raises:
        ReportError: ``run_dir`` is missing or holds none of those files (names the folder).
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    html_path = Path(out) if out is not None else run_dir / "report" / "index.html"
    if html_path.is_dir():
        html_path = html_path / "index.html"
    report_dir = html_path.parent
    report_dir.mkdir(parents=True, exist_ok=True)

    notes: list[str] = []
    summary = _read_json(run_dir / "summary.json", notes)
    result = _read_json(run_dir / "result.json", notes)
    kind = run_kind(run_dir, summary, result)
    if kind.startswith("pretraining") and summary is None:
        notes.append("no summary.json: the run was interrupted or is still running")

    csv_path = run_dir / "csv" / "metrics.csv"
    if csv_path.is_file():
        metrics = read_metrics(csv_path)
        notes += metrics.notes
    else:
        metrics = Metrics()
        notes.append("no csv/metrics.csv (run without logger.csv=true?)")
    plots = draw_plots(metrics, report_dir) if metrics.values else []
    if not plots and result is not None and isinstance(result.get("train_loss"), list):
        plots = _loss_only_plot(result["train_loss"], report_dir)
    images = _copy_images(run_dir, report_dir)

    name = run_dir.resolve().name
    body = [
        f"<h1>css_pose report: <code>{html.escape(name)}</code></h1>",
        f'<p class="sub">{html.escape(kind)} · <code>{html.escape(str(run_dir.resolve()))}</code>'
        f" · generated {html.escape(time.strftime('%Y-%m-%d %H:%M'))}</p>",
    ]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        body.append(f'<div class="notes"><strong>Notes</strong><ul>{items}</ul></div>')
    body += ["<h2>Summary</h2>", _summary_html(summary, result) or "<p>No summary file.</p>"]
    body += ["<h2>Configuration</h2>", _config_html(run_dir, result)]
    body.append("<h2>Metrics</h2>")
    if metrics.metric_columns():
        body.append(
            f"<p>Last logged value of each column of <code>csv/metrics.csv</code> "
            f"(x axis: {html.escape(metrics.axis)}).</p>"
        )
        body.append(_last_values_html(metrics))
    body.append('<div class="plots">')
    for p in plots:
        alt = f"{p.title}: {', '.join(p.columns)}"
        body.append(
            f'<figure><img src="{_src(p.file)}" alt="{html.escape(alt, quote=True)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>"
        )
    body.append("</div>")
    if not plots:
        body.append("<p>No metric has two or more logged points to plot.</p>")
    body.append("<h2>Images</h2>")
    if images:
        body.append('<div class="gallery">')
        for rel in images:
            body.append(
                f'<figure><a href="{_src(rel)}"><img src="{_src(rel)}" alt="{html.escape(rel)}" '
                f'loading="eager"></a><figcaption>{html.escape(rel)}</figcaption></figure>'
            )
        body.append("</div>")
    else:
        body.append("<p>No images under <code>images/</code>.</p>")

    n_images = len(plots) + len(images)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>css_pose report: {html.escape(name)}</title><style>{_CSS}</style></head>\n"
        f'<body data-images-total="{n_images}">\n'
        + "\n".join(body)
        + f"\n<script>{_LOAD_CHECK}</script>\n</body></html>\n"
    )
    html_path.write_text(page, encoding="utf-8")
    return html_path


def main(argv: list[str] | None = None) -> int:
    """``css-pose report RUN_DIR [--out PATH]``: build the report, print its path and a file:// URL.
    Returns the exit status (0, or 2 when RUN_DIR is not a run folder)."""
    parser = argparse.ArgumentParser(
        prog="css-pose report",
        description="Write a static HTML report (summary, config, metric plots, images) of a run "
        "folder written by train.py, linear_probe.py or train_head.py.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder, e.g. runs/css-...")
    parser.add_argument(
        "--out", metavar="PATH", help="HTML file to write (default RUN_DIR/report/index.html)"
    )
    args = parser.parse_args(argv)
    try:
        path = build_report(args.run_dir, args.out)
    except ReportError as e:
        print(f"css-pose report: error: {e}", file=sys.stderr)
        return 2
    print(path)
    print(path.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
