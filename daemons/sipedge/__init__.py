"""sipedge: SIP softswitch edge appliance.

`__version__` is the installed distribution's version (the wheel's, which the release tooling
sets). It is read from the `METADATA` file of the one `sipedge-*.dist-info` beside the package:
importing `importlib.metadata` costs every daemon's start 0.4-0.7 s under emulation (email,
zipfile, csv), and every sipedge process reads the version. A source tree or an editable
install has no dist-info there and asks `importlib.metadata`.
"""

from pathlib import Path


def _installed_version() -> str:
    site = Path(__file__).resolve().parent.parent
    found = list(site.glob("sipedge-*.dist-info/METADATA"))
    if len(found) == 1:
        try:
            with found[0].open(encoding="utf-8") as meta:
                for line in meta:
                    if not line.strip():  # the end of the headers
                        break
                    name, _, value = line.partition(":")
                    if name == "Version" and value.strip():
                        return value.strip()
        except (OSError, UnicodeDecodeError):
            pass  # importlib.metadata says what it can
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sipedge")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0"


__version__ = _installed_version()
