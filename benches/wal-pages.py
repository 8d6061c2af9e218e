"""Which tables and indexes a running SQLite server's commits write. Every second, for SAMPLES
seconds, reads the WAL frames of the current checkpoint cycle (those whose salts match the WAL
header), maps each frame's page to its table or index with the dbstat virtual table, and prints
each one's share of all the frames seen. Multiplied by the bytes written per message, the share
splits that figure by table and index.

    python3 benches/wal-pages.py DATA_DIR/fastchat.db [SAMPLES]

Run it while the server is under load (SQLite checkpoints and removes the WAL when the last
connection closes). It only reads.
"""

import collections
import sqlite3
import struct
import sys
import time

db_path = sys.argv[1]
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def frames_of_cycle():
    """The page of each frame in the WAL's current cycle, and how many commits it holds."""
    with open(db_path + "-wal", "rb") as wal:
        data = wal.read()
    page_size, _, salt1, salt2 = struct.unpack(">IIII", data[8:24])
    frame_size = 24 + page_size
    pages, commits, offset = [], 0, 32
    while offset + frame_size <= len(data):
        page, db_size, s1, s2 = struct.unpack(">IIII", data[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break  # a frame left from an earlier cycle: the current one ends here
        pages.append(page)
        commits += db_size != 0
        offset += frame_size
    return pages, commits


db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
by_tree, frames, commits = collections.Counter(), 0, 0
for _ in range(samples):
    pages, cycle_commits = frames_of_cycle()
    owner = dict(db.execute("SELECT pageno, name FROM dbstat"))
    for page in pages:
        by_tree[owner.get(page, "(new since the sample)")] += 1
    frames += len(pages)
    commits += cycle_commits
    time.sleep(1)
print(f"{frames} frames in {commits} commits, {frames / max(commits, 1):.1f} pages a commit")
for name, count in by_tree.most_common():
    print(f"  {name:45} {100 * count / frames:5.1f} %")
