"""What keying the data cache by content costs: seconds per GB of the streamed hash (issue 21).

    python tools/bench_cache_hash.py [--mb 1024]

Writes a file of random bytes in a temporary folder, reads it once (so it is in the page
cache, as a corpus read by the previous run is), then times ``content_hash`` on it and, in the
same run, SHA-256 and BLAKE2b over the same file for comparison. Report ratios: the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from seq2seq_rnn.data.cache import content_hash


def _stream(path: Path, make) -> None:
    h = make()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            h.update(chunk)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.bin"
        with open(path, "wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(1 << 20))
        _stream(path, hashlib.md5)  # warm the page cache
        gb = args.mb / 1024
        for name, fn in [
            ("xxh3_128 (content_hash)", lambda: content_hash(path)),
            ("sha256", lambda: _stream(path, hashlib.sha256)),
            ("blake2b", lambda: _stream(path, hashlib.blake2b)),
        ]:
            start = time.perf_counter()
            fn()
            print(f"{name:24s} {(time.perf_counter() - start) / gb:.3f} s/GB")


if __name__ == "__main__":
    main()
