"""Every relative link in the project's Markdown resolves (ctest label "docs").

For each Markdown file of the project (README.md, docs/, bench/, deploy/, tests/: every *.md
outside build trees and node_modules), every link that is not a URL with a scheme
(`[text](path)`, `![alt](path)`, `[ref]: path`, `<a href="path">`) must name a file or folder
that exists in the project, and its `#anchor`, when it points into a Markdown file (or is the
file's own `#anchor`), must be a heading's anchor as GitHub makes them: lower case, everything
but letters, digits, spaces, `-` and `_` dropped, spaces turned into `-`, and a repeated
heading numbered `-1`, `-2`, ... Links inside code (fenced blocks and `code spans`) are text,
not links. No network: URLs are not fetched.

The second test case checks the checker: on a small tree with a broken link, a broken anchor
and good ones, it reports exactly the broken ones.
"""
import os
import re
import tempfile
import unittest
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HCGW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SKIP_DIRS = {".git", "node_modules", ".cache", "__pycache__"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target may sit in <...> and be followed by a title.
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
                    r"(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HREF = re.compile(r"<a\s[^>]*href=\"([^\"]*)\"", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root):
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                         and not (folder == root and d.startswith("build")))
        found += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".md")]
    return found


def prose_lines(text):
    """(line number, line with its code spans blanked, line) of the lines outside fenced code
    blocks."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield n, CODE_SPAN.sub(lambda c: " " * len(c.group(0)), line), line


def slug(heading):
    """The anchor GitHub gives a heading's text."""
    text = CODE_SPAN.sub(lambda c: c.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)                     # inline HTML tags
    text = text.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path):
    """Every anchor of a Markdown file's headings (ATX and setext), repeats numbered."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    seen = {}
    result = set()
    previous = None
    for _, _, line in prose_lines(text):
        title = None
        m = HEADING.match(line)
        if m:
            title = m.group(2)
        elif previous and previous.strip() and SETEXT.match(line) and \
                not HEADING.match(previous):
            title = previous.strip()
        previous = line
        if title is None:
            continue
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else "%s-%d" % (base, n))
    # Explicit anchors: <a name="x"> or <a id="x">.
    result.update(re.findall(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", text, re.I))
    return result


def links(path):
    """(line number, target) of every link of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = []
    for n, line, _ in prose_lines(text):
        for rx in (INLINE, REFDEF, HREF):
            for m in rx.finditer(line):
                target = m.group(1).strip()
                if target.startswith("<") and target.endswith(">"):
                    target = target[1:-1]
                found.append((n, target))
    return found


def broken_links(root):
    """Every broken link under root, as "FILE:LINE: TARGET: why"."""
    root = os.path.realpath(root)
    problems = []
    cache = {}
    for md in markdown_files(root):
        rel = os.path.relpath(md, root)
        for n, target in links(md):
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue  # a URL (not fetched) or an empty target
            path, _, anchor = target.partition("#")
            path = re.sub(r"\?.*$", "", path)
            if path.startswith("/"):
                dest = os.path.join(root, path.lstrip("/"))  # GitHub: the repository's root
            elif path:
                dest = os.path.join(os.path.dirname(md), path)
            else:
                dest = md
            dest = os.path.realpath(dest)
            where = "%s:%d: %s" % (rel, n, target)
            if dest != root and not dest.startswith(root + os.sep):
                problems.append("%s: leaves the project" % where)
                continue
            if not os.path.exists(dest):
                problems.append("%s: no such file or folder" % where)
                continue
            if anchor and dest.endswith(".md") and os.path.isfile(dest):
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor.lower() not in cache[dest]:
                    problems.append("%s: no heading with the anchor #%s in %s"
                                    % (where, anchor, os.path.relpath(dest, root)))
    return problems


class LinksTest(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        files = markdown_files(SOURCE_DIR)
        names = {os.path.relpath(f, SOURCE_DIR) for f in files}
        # The walk found the pages it is about (a wrong root would pass vacuously).
        for page in ("README.md", "docs/contract.md", "bench/README.md"):
            self.assertIn(page, names)
        self.assertGreater(sum(len(links(f)) for f in files), 50, "too few links found")
        problems = broken_links(SOURCE_DIR)
        self.assertEqual(problems, [], "broken links:\n  " + "\n  ".join(problems))


class CheckerTest(unittest.TestCase):
    """The checker finds what it must, and only that."""

    def write(self, root, name, text):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def test_broken_links_and_anchors_are_reported(self):
        with tempfile.TemporaryDirectory() as root:
            self.write(root, "README.md",
                       "# Title — with `code`\n\n"
                       "Good: [a](docs/a.md), [b](docs/a.md#the-quota-governor), "
                       "[c](#title--with-code), [d](docs/), ![e](docs/a.md \"t\"),\n"
                       "[f](https://example.com/none), [g](docs/a.md#faq-1).\n"
                       "Broken: [h](docs/missing.md), [i](docs/a.md#no-such-heading),\n"
                       "[j](#nowhere), [k](../outside.md).\n\n"
                       "```\n[not a link](nowhere.md)\n```\n"
                       "Not a link either: `[x](nowhere.md)`.\n\n"
                       "[ref]: docs/gone.md\n")
            self.write(root, "docs/a.md", "# A\n\n## The quota governor\n\n## FAQ\n\nFAQ\n---\n")
            problems = broken_links(root)
        self.assertEqual(len(problems), 5, problems)
        for target in ("docs/missing.md", "docs/a.md#no-such-heading", "#nowhere",
                       "../outside.md", "docs/gone.md"):
            self.assertTrue(any(": %s: " % target in p for p in problems), (target, problems))

    def test_slugs_are_githubs(self):
        self.assertEqual(slug("hcgw — a gateway in front of the HelpCrunch REST API"),
                         "hcgw--a-gateway-in-front-of-the-helpcrunch-rest-api")
        self.assertEqual(slug("Reload and key rotation"), "reload-and-key-rotation")
        self.assertEqual(slug("`GET /_sim/stats`"), "get-_simstats")
        self.assertEqual(slug("Quota, retries and what each failure looks like"),
                         "quota-retries-and-what-each-failure-looks-like")


if __name__ == "__main__":
    unittest.main()
