"""Our declared dependency ranges stay inside what the installed TRL declares.

A bump of an extra (say ``vllm``) past the range TRL supports installs fine and fails only on a GPU
machine at the first rollout; this test catches it in CI instead. It reads TRL's own metadata, so
a TRL upgrade re-checks every range automatically.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _probe_versions(*specs: SpecifierSet) -> list[Version]:
    """Versions at and just around every boundary named in ``specs``.

    Specifier sets are unions of intervals whose ends are the versions they name, so whether one set
    lies inside another is decided by these points (plus the far ends).
    """
    probes = {Version("0.0.1"), Version("9999")}
    for spec in specs:
        for item in spec:
            version = Version(item.version.replace(".*", ""))
            release = list(version.release) + [0] * (3 - len(version.release))
            probes.add(version)
            for position in range(len(release)):
                up = release[: position + 1]
                up[-1] += 1
                probes.add(Version(".".join(map(str, up))))
                if release[position] > 0:
                    down = release[: position + 1]
                    down[-1] -= 1
                    probes.add(Version(".".join(map(str, down + [999]))))
            probes.add(Version(f"{version.base_version}.post1"))
            probes.add(Version(f"{version.base_version}.dev0"))
    return sorted(probes)


def outside(ours: SpecifierSet, theirs: SpecifierSet) -> list[Version]:
    """Versions our range admits that theirs does not (empty when ours lies inside theirs)."""
    return [
        v
        for v in _probe_versions(ours, theirs)
        if ours.contains(v, prereleases=True) and not theirs.contains(v, prereleases=True)
    ]


def test_probe_helper_catches_a_range_that_leaves():
    assert outside(SpecifierSet(">=0.22,<=0.31"), SpecifierSet(">=0.22.0,<=0.31.0")) == []
    assert outside(SpecifierSet(">=0.33"), SpecifierSet(">=0.22.0,<=0.31.0"))
    assert outside(SpecifierSet(">=0.20,<=0.31"), SpecifierSet(">=0.22.0,<=0.31.0"))
    assert outside(SpecifierSet(">=0.22,<0.32"), SpecifierSet(">=0.22.0,<=0.31.0"))  # 0.31.1
    assert outside(SpecifierSet(">=3.10"), SpecifierSet(">=3.11"))


def _trl_requirements() -> dict[tuple[str, str | None], SpecifierSet]:
    """(package, extra or None) -> TRL's specifier, from the installed TRL's metadata."""
    out: dict[tuple[str, str | None], SpecifierSet] = {}
    for line in importlib.metadata.requires("trl") or []:
        req = Requirement(line)
        extra = None
        if req.marker is not None:
            marker = str(req.marker)
            if "extra ==" not in marker:
                continue
            extra = marker.split("extra ==")[1].strip().strip("'\"")
        key = (req.name.lower(), extra)
        out[key] = out.get(key, SpecifierSet()) & req.specifier
    return out


def _ours() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_every_extra_and_core_dependency_stays_inside_trls_range():
    trl = _trl_requirements()
    project = _ours()
    checked, problems = [], []
    groups = {None: project["dependencies"], **project.get("optional-dependencies", {})}
    for extra, lines in groups.items():
        for line in lines:
            req = Requirement(line)
            name = req.name.lower()
            # TRL's range for the package: the same extra's, else its core one, else any extra's
            theirs = trl.get((name, extra)) or trl.get((name, None))
            if theirs is None:
                theirs = next((spec for (pkg, _), spec in trl.items() if pkg == name), None)
            if theirs is None or not str(theirs):
                continue
            checked.append(name)
            bad = outside(req.specifier, theirs)
            if bad:
                where = f"extra [{extra}]" if extra else "dependencies"
                problems.append(
                    f"{where}: {line!r} admits {', '.join(map(str, bad[:3]))}, outside TRL "
                    f"{importlib.metadata.version('trl')}'s {name}{theirs}"
                )
    assert not problems, "\n".join(problems)
    # the packages this test exists for are really compared
    assert {"vllm", "deepspeed", "transformers", "accelerate", "datasets", "peft"} <= set(checked)


def test_requires_python_inside_trls():
    trl_python = SpecifierSet(importlib.metadata.metadata("trl")["Requires-Python"] or "")
    ours = SpecifierSet(_ours()["requires-python"])
    bad = outside(ours, trl_python)
    assert not bad, f"requires-python {ours} admits {bad[:3]}, but TRL needs {trl_python}"


@pytest.mark.parametrize("extra", ["vllm", "deepspeed"])
def test_gpu_extras_are_bounded_above(extra):
    """An open upper bound admits the next major release of a library that breaks TRL regularly."""
    for line in _ours()["optional-dependencies"][extra]:
        assert any(s.operator in {"<", "<=", "=="} for s in Requirement(line).specifier), line
