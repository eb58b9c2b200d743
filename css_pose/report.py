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
import html
import json
import math
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote

import yaml

from css_pose.run_plots import (
    Metrics,
    draw_plots,
    group_key,
    group_of,
    loss_only_plot,
    read_metrics,
)

RUN_FILES = ("csv/metrics.csv", "summary.json", "result.json")

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
    for c in sorted(metrics.metric_columns(), key=lambda c: (group_key(group_of(c)), c)):
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
        plots = loss_only_plot(result["train_loss"], report_dir)
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
    body += _metrics_html(metrics, plots) + _images_html(images)
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


def _metrics_html(metrics: Metrics, plots: list) -> list[str]:
    """The Metrics section: the last value of each column, then the plots."""
    body = ["<h2>Metrics</h2>"]
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
    return body


def _images_html(images: list[str]) -> list[str]:
    """The Images section: a gallery of the run's images (paths relative to the report)."""
    body = ["<h2>Images</h2>"]
    if not images:
        return body + ["<p>No images under <code>images/</code>.</p>"]
    body.append('<div class="gallery">')
    for rel in images:
        body.append(
            f'<figure><a href="{_src(rel)}"><img src="{_src(rel)}" alt="{html.escape(rel)}" '
            f'loading="eager"></a><figcaption>{html.escape(rel)}</figcaption></figure>'
        )
    body.append("</div>")
    return body


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
