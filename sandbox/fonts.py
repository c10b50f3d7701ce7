"""Plot settings for the kernel: a CJK-capable font first when one is installed."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

# Families that cover Chinese, in order of preference (Debian: fonts-noto-cjk,
# fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-*).
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "AR PL UMing CN",
)


@functools.cache
def installed_cjk_families() -> tuple[str, ...]:
    """CJK font families that fontconfig reports as installed (cached per process)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return ()
    try:
        out = subprocess.run(
            [fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    found = {name.strip() for line in out.splitlines() for name in line.split(",")}
    return tuple(f for f in CJK_FAMILIES if f in found)


def write_matplotlibrc(path: Path) -> Path:
    """Write a matplotlibrc that puts the installed CJK fonts before DejaVu Sans."""
    families = [*installed_cjk_families(), "DejaVu Sans"]
    path.write_text(
        "font.family: sans-serif\n"
        f"font.sans-serif: {', '.join(families)}\n"
        "axes.unicode_minus: False\n",
        encoding="utf-8",
    )
    return path
