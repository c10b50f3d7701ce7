"""Plot settings for the kernel: a CJK-capable font first when one is installed."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

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


@functools.cache
def matplotlib_font_cache() -> Path | None:
    """A matplotlib font list built once on the host (cached per process; None on failure).

    Copied into each kernel's cache dir, it saves the font scan (about a second with CJK
    fonts) on every kernel's first plot. Built with an empty HOME so that it names only
    system fonts, which the sandbox sees at the same paths.
    """
    base = Path.home() / ".cache" / "qwen-react"
    key = hashlib.sha256("|".join(installed_cjk_families()).encode()).hexdigest()[:12]
    cache = base / f"mpl-{key}"
    found = sorted(cache.glob("matplotlib/fontlist-*.json"))
    if found:
        return found[-1]
    home = cache / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),
    }
    cmd = [sys.executable, "-c", "import matplotlib.font_manager"]
    try:
        subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not build the matplotlib font cache in %s: %s", cache, exc)
        return None
    found = sorted(cache.glob("matplotlib/fontlist-*.json"))
    return found[-1] if found else None


def install_font_cache(cache_home: Path) -> None:
    """Put the prebuilt font list where matplotlib looks (XDG_CACHE_HOME/matplotlib)."""
    source = matplotlib_font_cache()
    if source is None:
        return
    target = cache_home / "matplotlib"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / source.name)
