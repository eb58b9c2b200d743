"""Rules that keep one definition of each shared idea (issue 15), and the atomic writer they
point to."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from css_pose.artifacts.atomic import atomic_path, temporary_sibling, write_json, write_text

PACKAGE = Path(__file__).resolve().parents[1] / "css_pose"


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_only_the_atomic_module_renames_files_into_place():
    """Every atomic write goes through css_pose.artifacts.atomic."""
    allowed = PACKAGE / "artifacts" / "atomic.py"
    pattern = re.compile(r"\bos\.(replace|rename)\(|\.rename\(|\btmp\w*\.replace\(")
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
        for p in _sources()
        if p != allowed
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "rename files into place with css_pose.artifacts.atomic:\n" + "\n".join(
        offenders
    )


def test_one_strict_loader():
    """load_state_dict is called in one place (css_pose.checkpoint.load_strict)."""
    calls = [
        f"{p.relative_to(PACKAGE.parent)}:{i}"
        for p in _sources()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ".load_state_dict(" in line
    ]
    assert calls == [f"css_pose/checkpoint.py:{_line('checkpoint.py', '.load_state_dict(')}"]


def _line(name: str, text: str) -> int:
    lines = (PACKAGE / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json(path, {"a": 1})
    assert path.read_text() == '{"a": 1}'
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_text('{"a": 2, "half')
        raise KeyboardInterrupt
    assert path.read_text() == '{"a": 1}'  # the old content, whole
    assert not temporary_sibling(path).exists() and sorted(
        p.name for p in path.parent.iterdir()
    ) == ["result.json"]
    write_text(path, "new")
    assert path.read_text() == "new"
    assert temporary_sibling(path).name.startswith(".result.json.")


# The apps (what a command runs) and their modules. An app imports the library and
# css_pose.apps.support, never another app; the library imports no app; only css_pose.cli (the
# `css-pose` dispatcher) reaches into every app. docs/architecture.md draws the layers.
APPS = {
    "pretrain": ("css_pose.runner",),
    "probe": ("css_pose.linear_probe",),
    "head": ("css_pose.heads2d", "css_pose.temporal2d"),
    "lift": ("css_pose.lifting",),
    "predict": ("css_pose.predict", "css_pose.predict_multi"),
    "report": ("css_pose.report",),
    "inspect": ("css_pose.inspection",),
    "export": ("css_pose.data.export",),
    "generate": ("css_pose.data.synthetic.__main__",),
    "dkd": ("css_pose.dkd",),
}
DISPATCHERS = ("css_pose.cli",)
# Lightning: the pretraining modules (methods/) and the pretraining app only.
LIGHTNING_ALLOWED = ("css_pose.methods", "css_pose.runner")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every css_pose module (and pytorch_lightning) ``path`` imports, at any depth."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith(("css_pose", "pytorch_lightning", "lightning"))}


def _app_of(module: str) -> str | None:
    return next((app for app, mods in APPS.items() if module in mods), None)


def test_apps_import_no_other_app_and_the_library_imports_no_app():
    problems = []
    for path in _sources():
        module = _module(path)
        if module in DISPATCHERS:
            continue
        own = _app_of(module)
        for imported in sorted(_imports(path)):
            other = _app_of(imported)
            if other is None or other == own:
                continue
            who = f"app {own!r}" if own else "library module"
            problems.append(f"{module} ({who}) imports {imported} (app {other!r})")
    assert not problems, (
        "move the shared code into the library or css_pose.apps.support:\n" + "\n".join(problems)
    )


def test_lightning_only_in_methods_and_the_pretraining_app():
    problems = [
        f"{_module(path)} imports {m}"
        for path in _sources()
        if not _module(path).startswith(LIGHTNING_ALLOWED)
        for m in sorted(_imports(path))
        if m.startswith(("pytorch_lightning", "lightning"))
    ]
    assert not problems, "\n".join(problems)


def test_the_rules_see_a_violation(tmp_path, monkeypatch):
    """The import scan finds lazy (function-level) imports too."""
    probe = tmp_path / "css_pose" / "linear_probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "def f():\n    from css_pose.heads2d import run_head\n    import pytorch_lightning\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "css_pose")
    assert _app_of(_module(probe)) == "probe"
    assert {"css_pose.heads2d.run_head", "pytorch_lightning"} <= _imports(probe)


def test_every_consumer_computes_the_same_pck():
    """The online probe, the linear probe, the heads and the predict benchmark score the same
    predictions with the same PCK: docs/metrics.md's definition, written out here by hand
    (correct if |p_hat - p| <= alpha * longer side of the tight box of the visible true joints,
    pooled over visible joints)."""
    import importlib.util

    import numpy as np
    import torch

    from css_pose.heads2d import score_2d
    from css_pose.methods.callbacks import score_probe
    from css_pose.probe.model import compute_metrics

    rng = np.random.default_rng(3)
    gt = torch.from_numpy(rng.uniform(0, 32, (40, 17, 2)))
    pred = gt + torch.from_numpy(rng.normal(0, 2.5, (40, 17, 2)))
    visible = torch.from_numpy(rng.random((40, 17)) < 0.8)
    visible[0] = False  # a sample with nothing visible
    visible[1, 1:] = False  # and one with a single visible joint (1 px box)

    def by_hand(alpha: float) -> float:
        hits = seen = 0
        for p, g, v in zip(pred.numpy(), gt.numpy(), visible.numpy(), strict=True):
            if not v.any():
                continue
            side = max((g[v].max(0) - g[v].min(0)).max(), 1.0)
            hits += int((np.linalg.norm(p[v] - g[v], axis=-1) <= alpha * side).sum())
            seen += int(v.sum())
        return hits / seen

    spec = importlib.util.spec_from_file_location(
        "predict_videos", PACKAGE.parent / "benchmarks" / "predict_videos.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    zeros = torch.zeros(40, 17, 3)
    online = score_probe(
        {"kp2d": pred, "kp3d": zeros, "body3d": zeros},
        {"kp2d": gt, "kp3d": zeros, "body3d": zeros, "visibility": visible},
        0.1,
    )
    probe = compute_metrics(pred, gt, visible, "2d", 0.1)
    head = score_2d(pred, gt, visible, (0.1, 0.2))
    predicted = bench.score_frames(pred, gt, visible)
    for alpha in (0.1, 0.2):
        want = by_hand(alpha)
        assert 0.05 < want < 0.95  # the threshold matters for these predictions
        got = [probe[f"pck@{alpha:g}"], head[f"pck@{alpha:g}"], predicted[f"pck@{alpha:g}"]]
        if alpha == 0.1:
            got += [online["pck"], probe["pck"]]
        assert len(set(got)) == 1  # the same number everywhere
        assert got[0] == pytest.approx(want, abs=1e-6)  # float32 pooling


@pytest.mark.parametrize(
    ("what", "pattern", "home"),
    [
        ("mirroring (the left/right joint swap)", r"\bflip_permutation\(\)", "css_pose/flip.py"),
        ("run-folder naming", r"%Y%m%d-%H%M%S", "css_pose/artifacts/runs.py"),
        ("logger shutdown", r"\.experiment\.finish\(\)", "css_pose/methods/loggers.py"),
        (
            "feature collection over a loader",
            r'features\(batch\["frames"\]',
            "css_pose/probe/batches.py",
        ),
    ],
)
def test_one_definition(what, pattern, home):
    """Each of these is written in one module; the others call it."""
    found = sorted(
        {
            str(p.relative_to(PACKAGE.parent))
            for p in _sources()
            if re.search(pattern, p.read_text()) and p.name != "skeleton.py"
        }
    )
    assert found == [home], f"{what} belongs in {home} only, found in {found}"


@pytest.mark.parametrize(
    "verb",
    [
        "pretrain",
        "probe",
        "head",
        "lift",
        "dkd",
        "generate",
        "predict",
        "report",
        "inspect",
        "export",
    ],
)
def test_every_app_has_a_css_pose_verb_with_help(verb, capsys):
    from css_pose.cli import USAGE, main

    assert f"\n  {verb} " in USAGE
    try:
        code = main([verb, "--help"])
    except SystemExit as stop:  # argparse's --help
        code = stop.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_the_contrastive_sample_layout_is_read_by_name():
    """ContrastiveLayout's slices pick each part out of the frames the dataset writes."""
    import numpy as np

    from css_pose.data.sampling import ContrastiveLayout, sample_contrastive

    draw = sample_contrastive(np.random.default_rng(0), 60, 2, 4, 3, 20, 4, 8)
    frames = draw.frame_indices()
    at = ContrastiveLayout.of({"n_pos": 2, "n_neg": 3, "n_gt": 4})
    assert at.length == len(frames) == 10
    assert frames[at.anchor] == draw.anchor
    assert frames[at.positives].tolist() == draw.positives.tolist()
    assert frames[at.negatives].tolist() == draw.negatives.tolist()
    assert frames[at.transition].tolist() == draw.transition.tolist()


# Size limits (issue 15): a module of at most MODULE_LINES lines, a function body of at most
# FUNCTION_LINES lines (its docstring not counted), or a one-line reason where it is longer.
MODULE_LINES, FUNCTION_LINES = 400, 60
MODULE_REASON, FUNCTION_REASON = "# Longer than 400 lines: ", "# Longer than 60 lines: "


def _body_lines(node) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def test_modules_and_functions_are_short_or_say_why():
    too_long = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        name = path.relative_to(PACKAGE.parent)
        if len(lines) > MODULE_LINES and not any(
            line.startswith(MODULE_REASON) and len(line) > len(MODULE_REASON) + 10 for line in lines
        ):
            too_long.append(f"{name}: {len(lines)} lines and no '{MODULE_REASON}...' line")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if _body_lines(node) <= FUNCTION_LINES:
                continue
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            above = lines[start - 2].strip() if start > 1 else ""
            if not above.startswith(FUNCTION_REASON.strip()):
                too_long.append(
                    f"{name}:{node.lineno} {node.name}: {_body_lines(node)} lines and no "
                    f"'{FUNCTION_REASON}...' line above it"
                )
    assert not too_long, "split these, or say why not:\n" + "\n".join(too_long)


def test_the_size_rule_counts_the_body_without_the_docstring():
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))
    short = ast.parse(f'def f():\n    """doc\n    more"""\n{body}').body[0]
    assert _body_lines(short) == FUNCTION_LINES + 1  # the def line and the body
    long = ast.parse(f"def f():\n{body}    return 1\n").body[0]
    assert _body_lines(long) == FUNCTION_LINES + 2
