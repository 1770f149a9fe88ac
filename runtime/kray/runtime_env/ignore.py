"""gitignore-syntax matching for runtime_env `excludes` and the `.gitignore` files of a packaged directory.

Pure: patterns in, compiled rules and match decisions out (the caller reads the .gitignore files).
Semantics as git's: `#` comments, `!` negation, a trailing `/` matches directories only, a pattern
with a `/` before its end is anchored at its file's directory, `*`/`?`/`[...]` stay within one
path segment, `**` spans segments; the last matching rule wins, and an excluded directory is never
entered, so nothing below it can be re-included.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Rule:
    base: str  # the directory (relative to the package root, "" for the root) the pattern is relative to
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    pattern: str

    def matches(self, rel_path: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            prefix = self.base + "/"
            if not rel_path.startswith(prefix):
                return False
            rel_path = rel_path[len(prefix):]
        return self.regex.fullmatch(rel_path) is not None


def parse(lines: list[str], base: str = "") -> list[Rule]:
    """Rules from gitignore-syntax lines, relative to `base` (a '/'-separated relative directory)."""
    rules = []
    for raw in lines:
        rule = _rule(raw, base)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(raw: str, base: str) -> Rule | None:
    line = raw.rstrip("\n").rstrip("\r")
    if not line or line.startswith("#"):
        return None
    # Trailing spaces are ignored unless escaped with a backslash.
    while line.endswith(" ") and not line.endswith("\\ "):
        line = line[:-1]
    if not line:
        return None
    negate = False
    if line.startswith("!"):
        negate, line = True, line[1:]
    elif line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    body = _translate(line)
    if not anchored:
        body = "(?:.*/)?" + body
    return Rule(base, re.compile(body, re.DOTALL), negate, dir_only, raw.strip())


def _translate(pattern: str) -> str:
    """A gitignore glob as a regular expression over '/'-separated relative paths."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            at_end = i + 2 == n
            followed = i + 2 < n and pattern[i + 2] == "/"
            if at_start and followed:
                out.append("(?:.*/)?")  # "**/" : any number of leading directories, none included
                i += 3
                continue
            if at_start and at_end:
                out.append(".*")  # "/**" : everything inside
                i += 2
                continue
            out.append("[^/]*")  # other consecutive asterisks are ordinary ones
            i += 2
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = _class_end(pattern, i)
            if end < 0:
                out.append(re.escape(char))
            else:
                inner = pattern[i + 1 : end]
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = end
        elif char == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    j = start + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 1
    return j if j < len(pattern) else -1


def excluded(rules: list[Rule], rel_path: str, is_dir: bool) -> bool:
    """Whether the last rule that matches `rel_path` excludes it (False when none matches)."""
    verdict = False
    for rule in rules:
        if rule.matches(rel_path, is_dir):
            verdict = not rule.negate
    return verdict
