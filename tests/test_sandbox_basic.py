"""KernelSandbox basics on a real ipykernel: output, state, values, plots, tracebacks."""

from __future__ import annotations

import pytest
from PIL import Image

from sandbox import KernelSandbox
from sandbox.fonts import installed_cjk_families
from sandbox.testing import bwrap_skip_reason

MODES = [
    "process",
    pytest.param(
        "bwrap",
        marks=[
            pytest.mark.bwrap,
            pytest.mark.skipif(bool(bwrap_skip_reason()), reason=str(bwrap_skip_reason())),
        ],
    ),
]


@pytest.fixture(scope="module", params=MODES)
def sb(request):
    with KernelSandbox(isolation=request.param, timeout=20) as sandbox:
        yield sandbox


def test_print_goes_to_stdout(sb):
    r = sb.execute("print('hello', 6 * 7)")
    assert r.ok and r.stdout == "hello 42\n" and r.error is None


def test_state_survives_between_calls(sb):
    sb.execute("counter = 41")
    r = sb.execute("counter += 1; print(counter)")
    assert r.stdout.strip() == "42"


def test_last_expression_value_is_the_result(sb):
    r = sb.execute("a = [1, 2, 3]\nsum(a) * 10")
    assert r.ok and r.result == "60" and r.stdout == ""


def test_stderr_is_separate(sb):
    r = sb.execute("import sys; sys.stderr.write('warn\\n')")
    assert r.stderr == "warn\n" and r.stdout == ""


def test_traceback_is_clean_text(sb):
    r = sb.execute("def f():\n    return 1 / 0\nf()")
    assert not r.ok
    assert r.error is not None and r.error.name == "ZeroDivisionError"
    assert r.error.value == "division by zero"
    assert "\x1b" not in r.error.traceback
    assert "return 1 / 0" in r.error.traceback


def test_matplotlib_figure_becomes_a_valid_png(sb):
    r = sb.execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
    assert r.ok, r
    assert len(r.images) == 1
    path = r.images[0]
    assert path.parent == sb.workdir and path.suffix == ".png" and path.exists()
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_backend_is_inline_even_if_host_sets_agg(sb, monkeypatch):
    r = sb.execute("import matplotlib; print(matplotlib.get_backend())")
    assert "inline" in r.stdout


@pytest.mark.skipif(not installed_cjk_families(), reason="no CJK font installed (fonts-noto-cjk)")
def test_chinese_labels_use_a_cjk_font(sb):
    code = (
        "import warnings, matplotlib.pyplot as plt\n"
        "from matplotlib import font_manager\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    fig, ax = plt.subplots(); ax.set_title('中文标题'); fig.canvas.draw(); plt.close(fig)\n"
        "print(len([x for x in w if 'missing' in str(x.message).lower()]))\n"
        "print(font_manager.findfont(font_manager.FontProperties(family=['sans-serif'])))"
    )
    r = sb.execute(code)
    assert r.ok, r
    missing, font = r.stdout.split()
    assert missing == "0"
    assert "CJK" in font or "wqy" in font.lower()


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-123")
    with KernelSandbox(isolation="process", timeout=20) as sandbox:
        r = sandbox.execute(
            "import os; print(sorted(os.environ))\nprint('sk-host-secret-123' in str(os.environ))"
        )
    assert "OPENAI_API_KEY" not in r.stdout
    assert r.stdout.strip().endswith("False")


def test_cwd_is_the_workdir(sb):
    r = sb.execute("import os; print(os.getcwd())")
    assert r.stdout.strip() == str(sb.workdir)
