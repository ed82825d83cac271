"""Convert Sphinx roles in dicom_dask's sources to mkdocstrings Markdown cross-references.

mkdocstrings renders docstrings as Markdown, so a Sphinx role such as ``:meth:`Slide.read_region```
shows up verbatim on the API page. This script rewrites every role in ``dicom_dask/**/*.py``:

* a target that resolves (with griffe, the engine mkdocstrings uses) to an object of dicom_dask
  that the docs render becomes ``[`Slide.read_region`][dicom_dask.images.slide.Slide.read_region]``,
  the object's canonical path (autorefs also finds the re-exported ``dicom_dask.Slide`` there);
* a member the pages do not render on its own (a dataclass field described in the class's
  "Attributes" section) links to its class;
* any other target (an external name such as ``zarr.Array``, a private helper the API pages do not
  render, a name that does not resolve) becomes plain code, ``` `zarr.Array` ```, so that
  ``mkdocs build --strict`` never meets a broken reference.

Names are resolved as Sphinx would: a dotted full path as is; otherwise in the enclosing class
(``:attr:`array``` inside a class docstring), then in the module's namespace (its imports
included), then in the package's public namespace (``dicom_dask.open_slide``). Roles written with
a title (``:func:`the opener <open_slide>```) keep the title; ``~`` keeps the last part only.

The set of rendered objects is read from the ``::: identifier`` lines of ``docs/*.md`` with the
same member filter as ``mkdocs.yml`` (no names starting with ``_``), so the script stays right when
the API pages change. It is idempotent (a second run finds no role) and touches only the roles.

Usage::

    python docs/tools/fix_roles.py           # rewrite in place, print what changed
    python docs/tools/fix_roles.py --check   # exit 1 if any role is left (what the tests run)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "dicom_dask"
DOMAIN_ROLES = (
    "func|class|meth|attr|mod|data|exc|obj|const|type|property|function|method|attribute|module"
)
#: A Sphinx cross-reference role: optional ``py:`` domain, the role, then `target` or
#: `title <target>`.
ROLE = re.compile(
    r":(?:py:)?(?P<role>" + DOMAIN_ROLES + r"):`(?P<body>[^`]+)`(?!`)",
)
#: A Markdown cross-reference as written by this script.
LINK = re.compile(r"\[`[^`]+`\]\[[\w.]+\]")
LINE_LENGTH = 100
#: Any role-like text left over (what the tests reject): ``:word:`...```.
ANY_ROLE = re.compile(r"(?<![\w`]):(?:py:)?[a-z]+:`[^`\n]+`")


def _load(root: Path):  # -> griffe.Module
    import griffe

    return griffe.load(PACKAGE, search_paths=[str(root)], resolve_aliases=False)


def _final(obj):  # griffe Object or Alias -> Object, or None when it does not resolve
    import griffe

    try:
        return obj.final_target if isinstance(obj, griffe.Alias) else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError, KeyError):
        return None


def _member(obj, name: str):
    obj = _final(obj)
    if obj is None:
        return None
    try:
        member = obj.members.get(name)
    except (AttributeError, KeyError):
        return None
    if member is None and getattr(obj, "is_class", False):
        try:
            member = obj.all_members.get(name)  # inherited members too
        except Exception:
            member = None
    return member


def _walk(obj, parts: list[str]):
    for part in parts:
        if obj is None:
            return None
        obj = _member(obj, part)
    return obj


def rendered_paths(root: Path, package) -> set[str]:
    """Canonical paths of every object the docs render (``::: id`` lines and their members)."""
    import griffe

    paths: set[str] = set()

    def add(obj, depth: int) -> None:
        target = _final(obj)
        if target is None or target.path in paths:
            return
        if depth and not _documented(target):
            return  # mkdocs.yml keeps show_if_no_docstring off: such members are not rendered
        paths.add(target.path)
        if depth > 3 or not (target.is_class or target.is_module):
            return
        for name, member in target.members.items():
            if name.startswith("_"):
                continue
            if isinstance(member, griffe.Alias) and target.is_module:
                continue  # imported names are not rendered under a module
            if getattr(member, "inherited", False):
                continue
            add(member, depth + 1)

    for page in sorted((root / "docs").rglob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^:::\s+([\w.]+)\s*$", line)
            if not match:
                continue
            ident = match.group(1)
            if not ident.startswith(PACKAGE):
                continue
            obj = package if ident == PACKAGE else _walk(package, ident.split(".")[1:])
            if obj is not None:
                add(obj, 0)
    return paths


def _documented(obj) -> bool:
    try:
        return bool(obj.has_docstrings if (obj.is_class or obj.is_module) else obj.has_docstring)
    except Exception:
        return False


def _scopes(module, lineno: int) -> list:
    """The griffe objects enclosing ``lineno`` in ``module``, innermost first."""
    chain = []
    obj = module
    while True:
        inner = None
        for member in obj.members.values():
            if getattr(member, "is_alias", False):
                continue
            start, end = member.lineno, member.endlineno
            inside = start is not None and end is not None and start <= lineno <= end
            if inside and (member.is_class or member.is_function):
                inner = member
                break
        if inner is None:
            break
        chain.append(inner)
        obj = inner
    return [*reversed(chain), module]


def resolve(target: str, module, lineno: int, package):
    """The griffe object a role's target names, seen from ``module`` at ``lineno``, or None."""
    target = target.lstrip(".")
    parts = target.split(".")
    if parts[0] == PACKAGE:
        return _walk(package, parts[1:])
    for scope in _scopes(module, lineno):
        if scope.is_function:
            continue
        found = _walk(scope, parts)
        if found is not None and _final(found) is not None:
            return found
        if scope.is_module:
            try:
                full = scope.resolve(parts[0])
            except Exception:
                full = None
            if full and (full.startswith(PACKAGE + ".") or full == PACKAGE):
                head = _walk(package, full.split(".")[1:])
                found = _walk(head, parts[1:]) if head is not None else None
                if found is not None:
                    return found
    return _walk(package, parts)


def convert_text(text: str, module, package, rendered: set[str]) -> tuple[str, list[str]]:
    """Rewrite the roles of one source file; returns the new text and a log of the changes."""
    log: list[str] = []
    line_starts = [0]
    for match in re.finditer("\n", text):
        line_starts.append(match.end())

    def lineno_of(offset: int) -> int:
        lo, hi = 0, len(line_starts)
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def replace(match: re.Match[str]) -> str:
        body = match.group("body").strip()
        titled = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^<>]+)>", body, flags=re.S)
        if titled:
            title, target = titled.group("title"), titled.group("target").strip()
        else:
            target = body
            title = None
        short = target.startswith("~")
        target = target.lstrip("~!")
        if title is None:
            title = target.rsplit(".", 1)[-1] if short else target
        lineno = lineno_of(match.start())
        obj = resolve(target, module, lineno, package) if module is not None else None
        final = _final(obj) if obj is not None else None
        path = final.path if final is not None else None
        while path is not None and path not in rendered and final is not None:
            # a member documented only in its class's "Attributes" section: link to the class
            final = final.parent if getattr(final.parent, "is_class", False) else None
            path = final.path if final is not None else None
        linked = path is not None and path in rendered
        new = f"[`{title}`][{path}]" if linked else f"`{title}`"
        log.append(f"{lineno}: {match.group(0)} -> {new}")
        return new

    new = ROLE.sub(replace, text)
    if new == text:
        return text, log
    return "\n".join(reflow(new.split("\n"))), log


def _split(line: str) -> tuple[str, str, str]:
    """``(indentation, comment prefix, text)`` of a source line."""
    indent = line[: len(line) - len(line.lstrip())]
    body = line[len(indent) :]
    for prefix in ("#: ", "# "):
        if body.startswith(prefix):
            return indent, prefix, body[len(prefix) :]
    return indent, "", body


#: Lines that start something of their own: never joined to the line above.
_STRUCTURE = re.compile(
    "|".join(
        [
            r"^[-*+|:>]",  # list items, tables, quotes, field lists
            r"^\d+\.\s",  # numbered items
            r"^(\.\.|```|\"{3}|'{3})",  # directives, fences, a docstring's end
            r"^[-=]{3,}\s*$",  # numpydoc section underlines
            r"^\w[\w, ]*\s:\s",  # numpydoc parameter lines (name : type)
        ]
    )
)


def _continues(line: str, above: str) -> bool:
    """Whether ``line`` goes on the paragraph of ``above`` (same indentation and prefix)."""
    indent, prefix, text = _split(line)
    up_indent, up_prefix, up_text = _split(above)
    if not text.strip() or (indent, prefix) != (up_indent, up_prefix):
        return False
    if up_text.rstrip().endswith(('"""', "'''")) or text.rstrip().endswith(":"):
        return False
    return not _STRUCTURE.match(text)


def reflow(lines: list[str], width: int = LINE_LENGTH) -> list[str]:
    """Break the lines that a cross-reference made too long (ruff's line length).

    The words past ``width`` go to the start of the next line when it continues the same
    paragraph (same indentation and ``#:`` / ``#`` prefix, not a list item, a numpydoc section
    or parameter line, not past the docstring's end), which may push words on in turn; otherwise
    they make a new line with the same indentation and prefix. Only lines holding a
    cross-reference, and the lines they push words into, are touched.
    """
    out = list(lines)
    i = 0
    carried = False
    while i < len(out):
        line = out[i]
        if len(line) <= width or not (LINK.search(line) or carried):
            carried = False
            i += 1
            continue
        indent, prefix, text = _split(line)
        words = text.split(" ")
        head = indent + prefix + words[0]
        k = 1
        while k < len(words) and len(head) + 1 + len(words[k]) <= width:
            head += " " + words[k]
            k += 1
        rest = " ".join(words[k:])
        if not rest:  # one word longer than the line: leave it
            carried = False
            i += 1
            continue
        out[i] = head
        if i + 1 < len(out) and _continues(out[i + 1], line):
            _, _, below = _split(out[i + 1])
            out[i + 1] = indent + prefix + rest + " " + below.lstrip()
        else:
            out.insert(i + 1, indent + prefix + rest)
        carried = True
        i += 1
    return out


def module_of(package, path: Path, root: Path):
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return _walk(package, parts[1:]) if len(parts) > 1 else package


def sources(root: Path) -> Iterator[Path]:
    yield from sorted((root / PACKAGE).rglob("*.py"))


def leftover_roles(root: Path) -> list[str]:
    """``file:line: text`` for every role-like text left in the package's sources."""
    found = []
    for path in sources(root):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in ANY_ROLE.finditer(line):
                found.append(f"{path.relative_to(root)}:{lineno}: {match.group(0)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if any role")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.check:
        left = leftover_roles(root)
        print("\n".join(left) or "no Sphinx role left")
        return 1 if left else 0
    package = _load(root)
    rendered = rendered_paths(root, package)
    changed = 0
    for path in sources(root):
        text = path.read_text(encoding="utf-8")
        if not ROLE.search(text):
            continue
        new, log = convert_text(text, module_of(package, path, root), package, rendered)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
            for entry in log:
                print(f"{path.relative_to(root)}:{entry}")
    left = leftover_roles(root)
    print(f"{changed} files rewritten; {len(left)} role-like texts left")
    for entry in left:
        print("  left:", entry)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
