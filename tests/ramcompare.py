"""Comparing two RAM dumps (offset = physical address) page by page over given ranges."""
PAGE = 4096
BLOCK = 64 << 20


def differing_pages(a_path, b_path, ranges):
    """Addresses of the pages in [start, end) ranges whose bytes differ between the dumps.
    Compares 64 MiB at a time and looks at single pages only where a block differs."""
    out = []
    with open(a_path, "rb") as a, open(b_path, "rb") as b:
        for start, end in ranges:
            for pos in range(start, end, BLOCK):
                n = min(BLOCK, end - pos)
                a.seek(pos)
                b.seek(pos)
                x, y = a.read(n), b.read(n)
                assert len(x) == len(y) == n, f"a dump ends before {pos + n:#x}"
                if x != y:
                    out += [pos + i for i in range(0, n, PAGE) if x[i:i + PAGE] != y[i:i + PAGE]]
    return out
