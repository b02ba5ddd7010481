"""Known-vulnerability audit of the declared dependencies (pip-audit), honest about what it could check.

    python benchmarks/audit.py [--groups test,fuzz] [--service pypi|osv|auto] [--json]

The packages audited are the ones pyproject.toml declares (runtime `dependencies`, plus the optional
groups named by --groups; default: test) and everything they require, transitively, at the versions
installed in this environment (environment markers evaluated here). They are written pinned to a
requirements file and checked with `pip-audit --no-deps --disable-pip`, so nothing is installed.

pip-audit needs a vulnerability database on the network: the PyPI JSON API (`pypi` service) or
OSV (`osv`). A package the database does not know is skipped, not failed, so "no known
vulnerabilities" can also mean "nothing was checked". Before trusting a result this script audits a
canary, a package version with published advisories; if the canary comes back clean or skipped, the
database was not reached and the result is UNVERIFIED.

Exit status: 0 clean (every package checked, none vulnerable), 1 vulnerable, 3 unverified (database
unreachable, or some packages skipped), 2 usage or tool error. With --json the last line of stdout is
one JSON object: status, service, audited, vulnerable, skipped, reason.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CANARY = "requests==2.19.0"  # CVE-2018-18074 / PYSEC-2018-28 and later advisories
TIMEOUT_S = 300

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(groups: list[str]) -> list[str]:
    """Requirement strings of the runtime dependencies and the named optional groups."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for group in groups:
        if group not in optional:
            raise SystemExit(f"audit: no optional dependency group {group!r} (have {', '.join(optional)})")
        reqs += optional[group]
    return reqs


def installed_closure(requirements: list[str]) -> tuple[dict[str, str], list[str]]:
    """{canonical name: installed version} of the requirements and their dependencies, and the ones
    that apply here but are not installed."""
    from packaging.requirements import Requirement

    pinned: dict[str, str] = {}
    missing: list[str] = []
    todo = [(Requirement(r), frozenset()) for r in requirements]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        name = _canonical(req.name)
        if name in pinned:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        pinned[name] = dist.version
        for sub in dist.requires or []:
            todo.append((Requirement(sub), frozenset(req.extras)))
    return pinned, missing


def pip_audit(requirement_lines: list[str], service: str) -> dict:
    """pip-audit's JSON report for pinned requirements (no resolution, nothing installed)."""
    exe = shutil.which("pip-audit") or str(Path(sys.executable).with_name("pip-audit"))
    if not Path(exe).exists():
        raise SystemExit("audit: pip-audit is not installed (pip install '.[audit]')")
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(requirement_lines) + "\n")
        cmd = [exe, "-r", str(req), "--no-deps", "--disable-pip", "-s", service, "-f", "json",
               "--progress-spinner", "off", "--cache-dir", str(Path(tmp) / "cache")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    start = proc.stdout.find("{")
    if start < 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"pip-audit exited {proc.returncode}: {tail}"}
    return json.loads(proc.stdout[start:])


def _summarise(report: dict) -> tuple[list[dict], list[dict], int]:
    """(vulnerable packages, skipped packages, number checked)."""
    deps = report.get("dependencies", [])
    vulnerable = [{"name": d["name"], "version": d.get("version"),
                   "ids": [v["id"] for v in d.get("vulns", [])],
                   "fix_versions": sorted({f for v in d.get("vulns", []) for f in v.get("fix_versions", [])})}
                  for d in deps if d.get("vulns")]
    skipped = [{"name": d["name"], "reason": d["skip_reason"]} for d in deps if d.get("skip_reason")]
    return vulnerable, skipped, len(deps) - len(skipped)


def _json_api_probe(service: str) -> str:
    """For the pypi service: what the per-release JSON endpoint pip-audit reads answers (it differs
    from the simple index pip installs from, so PyPI can be usable for installing yet not for this)."""
    if service != "pypi":
        return ""
    import urllib.error
    import urllib.request

    name, version = CANARY.split("==")
    url = f"https://pypi.org/pypi/{name}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return f" ({url} answered HTTP {resp.status})"
    except urllib.error.HTTPError as exc:
        return f" ({url} answered HTTP {exc.code}: the PyPI JSON API is not reachable from here)"
    except OSError as exc:
        return f" ({url}: {exc})"


def database_reachable(service: str) -> tuple[bool, str]:
    """Does `service` know the canary's advisories? (False, why) when it does not."""
    report = pip_audit([CANARY], service)
    if "error" in report:
        return False, report["error"]
    vulnerable, skipped, _ = _summarise(report)
    if vulnerable:
        return True, ""
    if skipped:
        return False, f"canary {CANARY} skipped: {skipped[0]['reason']}{_json_api_probe(service)}"
    return False, f"canary {CANARY} reported clean: the database answered without its known advisories"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", default="test", help="optional dependency groups to include, comma separated")
    ap.add_argument("--service", choices=("auto", "pypi", "osv"), default="auto",
                    help="vulnerability database (auto: the first one that knows the canary)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    groups = [g for g in args.groups.split(",") if g]
    pinned, missing = installed_closure(declared(groups))
    lines = [f"{name}=={version}" for name, version in sorted(pinned.items())]
    print(f"auditing {len(lines)} installed packages (declared: runtime + {', '.join(groups) or 'no groups'})")
    for m in missing:
        print(f"  not installed, not audited: {m}")

    tried = []
    service = None
    for candidate in (("pypi", "osv") if args.service == "auto" else (args.service,)):
        ok, why = database_reachable(candidate)
        tried.append(f"{candidate}: {why}" if not ok else f"{candidate}: reachable")
        if ok:
            service = candidate
            break
    result = {"status": "unverified", "service": service, "audited": len(lines), "checked": 0,
              "vulnerable": [], "skipped": [], "not_installed": missing, "reason": "; ".join(tried)}
    if service is None:
        print("UNVERIFIED: no vulnerability database could be reached, nothing was checked")
        for t in tried:
            print(f"  {t}")
    else:
        report = pip_audit(lines, service)
        if "error" in report:
            result["reason"] = report["error"]
            print(f"UNVERIFIED: {report['error']}")
        else:
            vulnerable, skipped, checked = _summarise(report)
            result.update(vulnerable=vulnerable, skipped=skipped, checked=checked)
            for v in vulnerable:
                print(f"  VULNERABLE {v['name']} {v['version']}: {', '.join(v['ids'])} "
                      f"(fixed in {', '.join(v['fix_versions']) or 'no release yet'})")
            for s in skipped:
                print(f"  skipped {s['name']}: {s['reason']}")
            if vulnerable:
                result["status"] = "vulnerable"
            elif skipped:
                result["reason"] = f"{len(skipped)} package(s) not known to the {service} database"
            else:
                result["status"] = "clean"
            print(f"{result['status'].upper()}: {checked} of {len(lines)} packages checked against {service}, "
                  f"{len(vulnerable)} with known vulnerabilities")
    if args.json:
        print(json.dumps(result))
    sys.exit({"clean": 0, "vulnerable": 1}.get(result["status"], 3))


if __name__ == "__main__":
    main()
