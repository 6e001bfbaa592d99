"""Say whether a Python distribution is installed at one version with its extras.

    python dist_installed.py NAME VERSION [EXTRA,EXTRA...]

Prints "ok", or one line saying what is missing or different, and exits 0
either way (the caller decides). Reads installed metadata only, so it costs a
fraction of `pip freeze`; roles run it before their pip task and skip pip
when it says "ok". Requirements are checked for presence, with the extras a
requirement names on the distribution itself (``name[report]``) followed.
"""

import importlib.metadata as md
import re
import sys

REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def why_not(name: str, version: str, extras: set[str]) -> str | None:
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        return f"{name} is not installed"
    if have != version:
        return f"{name} {have} is installed, {version} is wanted"
    wanted, seen = set(extras), set()
    while True:
        for req in md.requires(name) or []:
            req_name, req_extras = REQ.match(req).groups()  # type: ignore[union-attr]
            marker = EXTRA.search(req)
            if marker and marker.group(1) not in wanted:
                continue
            if norm(req_name) == norm(name):
                wanted |= {e.strip() for e in (req_extras or "").split(",") if e.strip()}
                continue
            try:
                md.version(req_name)
            except md.PackageNotFoundError:
                return f"{req_name} is missing" + (f" (extra {marker.group(1)})" if marker else "")
        if wanted == seen:
            return None
        seen = set(wanted)


if __name__ == "__main__":
    extras = {e for e in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if e}
    print(why_not(sys.argv[1], sys.argv[2], extras) or "ok")
