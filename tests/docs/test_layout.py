"""docs/architecture.md's table of files is complete (ctest label "docs").

Every source file of hcgw and hcgw-sim (src/**/*.c, src/**/*.h, include/hcgw/*.h and *.h.in)
must be named in docs/architecture.md, in a code span, by its path under src/ or include/hcgw/
(`conn.c`, `conn.h`, `sim/api.c`): a file added without its line in the map fails here.
"""
import os
import re
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HCGW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SUFFIXES = (".c", ".h", ".h.in")


def source_files():
    """The names the map must hold: paths under src/ and under include/hcgw/."""
    names = set()
    for top in ("src", os.path.join("include", "hcgw")):
        base = os.path.join(SOURCE_DIR, top)
        for folder, _, files in os.walk(base):
            for f in files:
                if f.endswith(SUFFIXES):
                    names.add(os.path.relpath(os.path.join(folder, f), base).replace(os.sep, "/"))
    return names


def named_in_map():
    with open(os.path.join(SOURCE_DIR, "docs", "architecture.md"), encoding="utf-8") as f:
        text = f.read()
    words = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        words.update(span.split())
    return words


class LayoutTest(unittest.TestCase):
    def test_every_source_file_is_in_the_map(self):
        files = source_files()
        for known in ("main.c", "request.c", "router.h", "sim/main.c"):
            self.assertIn(known, files)  # the walk found the tree
        missing = sorted(files - named_in_map())
        self.assertEqual(missing, [], "docs/architecture.md does not name: " + ", ".join(missing))


if __name__ == "__main__":
    unittest.main()
