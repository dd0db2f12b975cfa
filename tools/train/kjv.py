"""kjv.py - the training text: the King James Version of the Bible, one verse per line.

The KJV (1611) is in the public domain (outside the United Kingdom, where the Crown's letters
patent still apply to printing it). Debian ships it in the package `bible-kjv-text`, read by the
`bible` program of the package `bible-kjv` (apt-get install bible-kjv). Its output is

    Genesis 1
      1 In the beginning God created the heaven and the earth.
      2 And the earth was without form, and void; and darkness was upon the face of
    the deep. And the Spirit of God moved upon the face of the waters.

which load_text() turns into "In the beginning God created ...\\nAnd the earth was ...\\n".
"""
import re
import shutil
import subprocess


def load_text():
    exe = shutil.which("bible") or "/usr/bin/bible"
    raw = subprocess.run([exe, "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True, encoding="ascii").stdout
    verses, cur, after_blank = [], None, True
    for line in raw.splitlines():
        if not line.strip():
            after_blank = True
            continue
        if after_blank and not line.startswith(" "):
            after_blank = False                 # a "Book N" heading after a blank line
            continue
        after_blank = False
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:                                   # a new verse
            if cur is not None:
                verses.append(cur)
            cur = m.group(1).strip()
        else:                                   # continuation of a wrapped verse
            cur += " " + line.strip()
    if cur is not None:
        verses.append(cur)
    return "\n".join(verses) + "\n"


if __name__ == "__main__":
    t = load_text()
    print(t[:600])
    print(f"... {len(t)} bytes, {t.count(chr(10))} verses")
