"""A directory of 50,000 entries lists completely and its entries stat."""
import os
import random

import pytest

from origin import Nginx

N = 50_000
ODD = ["odd name #%?+ ü", "-dash", "plus+"]


def make_big_dir(path):
    os.makedirs(path)
    names = [f"scan_{i:06d}.tiff" for i in range(N - len(ODD))] + ODD
    for name in names:
        os.close(os.open(os.path.join(path, name),
                         os.O_WRONLY | os.O_CREAT, 0o644))
    with open(os.path.join(path, "scan_000007.tiff"), "wb") as f:
        f.write(b"x" * 777)
    return set(names)


@pytest.mark.slow
def test_fifty_thousand_entries(tmp_path, mounter):
    root = tmp_path / "bigorigin"
    names = make_big_dir(str(root / "many"))
    with Nginx(str(root)) as ng:
        m = mounter(ng.url)
        got = os.listdir(m.path("many"))
        assert len(got) == len(set(got)), "duplicate names in the listing"
        missing = names - set(got)
        extra = set(got) - names
        assert not missing and not extra, (
            f"listing of {N} entries: {len(missing)} missing "
            f"(e.g. {sorted(missing)[:5]}), {len(extra)} unexpected "
            f"(e.g. {sorted(extra)[:5]})")
        for name in random.Random(5).sample(sorted(names), 300) + ODD:
            st = os.stat(m.path("many", name))
            assert st.st_size == 0, name
        assert os.stat(m.path("many", "scan_000007.tiff")).st_size == 777
        m.umount()
