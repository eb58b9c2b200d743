"""``css-pose report``: an HTML report of a fake run folder (sparse Lightning CSV, summary.json,
images), its errors, and a headless-Chromium render that checks every plot and image decodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from css_pose.report import ReportError, build_report, main
from css_pose.run_plots import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]

# Lightning writes one row per logging call: each row fills only its own columns.
HEADER = (
    "epoch,train/lr,probe/z_i_mpjpe,probe/z_v_mpjpe,probe/init_z_i_mpjpe,probe/init_z_v_mpjpe,"
    "step,train/loss,train/loss_contrastive,val/loss"
)


def sparse_rows() -> list[str]:
    rows = [",,,,214.6,213.4,0,,,"]
    for i, step in enumerate((4, 9, 14, 19)):
        rows.append(f",{1e-4 * (i + 1)},,,,,{step},,,")
        rows.append(f"{i},,,,,,{step},{5.0 - i},{1.0 - 0.1 * i},")
    for epoch, step in ((0, 9), (1, 19)):
        rows.append(f"{epoch},,,,,,{step},,,{4.5 - epoch}")
        rows.append(f"{epoch},,{260.0 - 10 * epoch},{250.0 - 20 * epoch},,,{step},,,")
    return rows


def write_run(run: Path, rows: list[str] | None = None) -> Path:
    (run / "csv").mkdir(parents=True)
    (run / "images").mkdir()
    lines = [HEADER, *(sparse_rows() if rows is None else rows)]
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run / "config.yaml").write_text("method:\n  name: css\nnote: <b>not bold</b>\n")
    summary = {
        "run_dir": str(run),
        "global_step": 20,
        "train_seconds": 12.5,
        "last_checkpoint": str(run / "checkpoints" / "last.ckpt"),
        "probe_initial": {"z_v_mpjpe": 213.4, "z_i_mpjpe": 214.6},
        "probe_final": {"z_v_mpjpe": 230.0, "z_i_mpjpe": 250.0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    rng = np.random.default_rng(0)
    for name in ("reconstruction_epoch001.png", "swap_epoch001.png"):
        image = rng.integers(0, 255, (48, 96, 3), dtype=np.uint8)
        assert cv2.imwrite(str(run / "images" / name), image)
    return run


def img_sources(html_text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html_text)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    run = write_run(tmp_path_factory.mktemp("report") / "css-20260101-000000")
    return run, build_report(run)


def test_report_names_metrics_and_links_existing_images(report):
    run, html_path = report
    assert html_path == run / "report" / "index.html"
    text = html_path.read_text()
    for column in ("train/loss", "train/loss_contrastive", "val/loss", "probe/z_v_mpjpe"):
        assert column in text
    assert "train/lr" in text
    assert "pretraining (train.py)" in text
    assert "213.4" in text and "12.5" in text  # summary.json numbers
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text and "<b>not bold</b>" not in text

    sources = img_sources(text)
    assert "plot_probe_mpjpe.png" in sources and "plot_loss.png" in sources
    assert "images/swap_epoch001.png" in sources
    assert len(sources) == int(re.search(r'data-images-total="(\d+)"', text)[1])
    for src in sources:
        assert (html_path.parent / src).is_file(), src
    for name in ("reconstruction_epoch001.png", "swap_epoch001.png"):
        copied = html_path.parent / "images" / name
        assert copied.read_bytes() == (run / "images" / name).read_bytes()


def test_plots_are_valid_pngs(report):
    _, html_path = report
    plots = sorted(html_path.parent.glob("plot_*.png"))
    assert {p.name for p in plots} >= {"plot_train.png", "plot_val.png", "plot_probe.png"}
    for p in plots:
        assert p.read_bytes()[:8] == PNG_MAGIC, p
        image = cv2.imread(str(p))
        assert image is not None and image.shape[0] > 100 and image.std() > 1, p


def test_sparse_columns_keep_their_own_points(tmp_path):
    (tmp_path / "metrics.csv").write_text("\n".join([HEADER, *sparse_rows()]) + "\n")
    metrics = read_metrics(tmp_path / "metrics.csv")
    assert metrics.axis == "step" and metrics.notes == []
    assert metrics.series("val/loss") == ([9.0, 19.0], [4.5, 3.5])
    assert metrics.series("train/loss") == ([4.0, 9.0, 14.0, 19.0], [5.0, 4.0, 3.0, 2.0])


def test_not_a_run_folder_names_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(ReportError, match=re.escape(str(folder))) as err:
            build_report(folder)
        assert "csv/metrics.csv, summary.json or result.json" in str(err.value)
    write_run(tmp_path / "bench" / "head-seed0")
    with pytest.raises(ReportError, match="head-seed0 are run folders"):
        build_report(tmp_path / "bench")


def test_malformed_and_empty_csv_are_reported_not_fatal(tmp_path):
    rows = [*sparse_rows(), "3,,,,,,24,oops,0.5,", "1,2,3", "0,,,,,,29,1.5,0.4,,extra"]
    run = write_run(tmp_path / "bad", rows)
    text = build_report(run).read_text()
    assert "skipped 2 row(s)" in text
    assert "column train/loss: 1 value(s) that are not numbers" in text
    assert "plot_train.png" in img_sources(text)

    empty = tmp_path / "empty_csv"
    (empty / "csv").mkdir(parents=True)
    (empty / "csv" / "metrics.csv").write_text("")
    text = build_report(empty).read_text()
    assert "metrics.csv is empty" in text


def test_result_json_run_kind_and_metrics(tmp_path):
    run = tmp_path / "probe-run"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text(
        "epoch,probe/train_loss,step,test/mpjpe\n0,0.96,0,\n1,0.75,1,\n,,2,221.1\n"
    )
    result = {
        "checkpoint": "random init",
        "config": {"probe": "linear", "feature": "z_v"},
        "train_loss": [0.96, 0.75],
        "metrics": {"mpjpe": 221.1, "p_mpjpe": 159.7},
    }
    (run / "result.json").write_text(json.dumps(result))
    text = build_report(run, tmp_path / "out" / "probe.html").read_text()
    assert "probe (linear_probe.py)" in text
    assert "p_mpjpe" in text and "159.7" in text and "test/mpjpe" in text
    assert "feature: z_v" in text  # the config, from result.json
    assert (tmp_path / "out" / "plot_probe.png").is_file()


def test_main_prints_path_and_url(report, tmp_path, capsys):
    run, _ = report
    out = tmp_path / "r" / "index.html"
    assert main([str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), out.resolve().as_uri()]
    assert main([str(tmp_path / "nothing")]) == 2
    assert "nothing does not exist" in capsys.readouterr().err


def find_chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        message = (
            "headless Chromium is not installed: install Debian's `chromium` "
            "(apt-get install -y chromium; `make test` installs it)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = find_chromium()
    _, html_path = report
    url = html_path.resolve().as_uri()
    flags = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]

    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:2000]
    ok = re.search(r'data-images-ok="(\d+)"', body[0])
    total = re.search(r'data-images-total="(\d+)"', body[0])
    assert ok and total, f"the load script did not run: {body[0]}"
    assert int(total[1]) == len(img_sources(html_path.read_text())) >= 5
    assert ok[1] == total[1], f"only {ok[1]} of {total[1]} images decoded"

    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    image = cv2.imread(str(shot))
    assert image is not None, "Chromium wrote no screenshot"
    assert image.shape[:2] == (2000, 1200) and image.std() > 5
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report_screenshot.png")
