"""Tokenizing in shares: `--shard I/N`, torchrun's ranks, and machines that do or do not share
a cache. Shares are disjoint and complete, and the cache they fill is the one a single process
fills."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_vab
from tests.test_exit import torchrun, torchrun_env
from tests.test_tokenize import DEBUG, FPS, clip_folder  # noqa: F401 (a fixture)
from vabcli.data.shards import Shard

ROOT = Path(__file__).parent.parent


def _key(n: int) -> str:
    return f"clips/clip{n}.mp4"


@given(st.integers(0, 300), st.integers(1, 9), st.integers(1, 5))
def test_shares_are_disjoint_complete_and_compose(n, count, ranks):
    items = list(range(n))
    shares = [Shard(i, count).of(items, _key) for i in range(1, count + 1)]
    assert sorted(sum(shares, [])) == items
    for i in range(1, count + 1):  # share r of W of share i is one share of the whole list
        parts = [
            Shard(i, count).within(Shard(r, ranks)).of(items, _key) for r in range(1, 1 + ranks)
        ]
        assert sorted(sum(parts, [])) == shares[i - 1]


def test_a_clips_share_follows_from_its_name_alone():
    names = [f"clip{i}.mp4" for i in range(400)]
    shares = [Shard(i, 4).of(names, str) for i in range(1, 5)]
    assert all(70 <= len(share) <= 130 for share in shares)  # about a quarter each
    more = names + [f"new{i}.mp4" for i in range(100)]
    assert Shard(2, 4).of(more, str)[: len(shares[1])] == shares[1]  # new clips move none


@pytest.mark.parametrize("text", ["0/4", "5/4", "1", "a/b", "1/0", "1/2/3"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match="I/N with 1 <= I <= N"):
        Shard.parse(text)


def _cache_files(cache: Path) -> dict[str, bytes]:
    """The cache's entries by path (its bookkeeping of when and by whom left out)."""
    return {
        str(p.relative_to(cache)): p.read_bytes()
        for p in sorted(cache.rglob("*"))
        if p.is_file() and p.suffix in (".npy", ".json") and "lock" not in p.name
    }


def _tokenize(folder: Path, cache: Path, *extra: str) -> list[dict]:
    args = ["tokenize", str(folder), "--cache", str(cache), "--fps", str(FPS), *DEBUG, "--json"]
    done = run_vab(*args, *extra)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_shards_of_vab_tokenize_fill_the_cache_one_run_fills(clip_folder, tmp_path):  # noqa: F811
    one = _tokenize(clip_folder, tmp_path / "one")
    parts = [_tokenize(clip_folder, tmp_path / "shared", "--shard", f"{i}/3") for i in (1, 2, 3)]
    names = [[r["input"] for r in part] for part in parts]
    assert sorted(sum(names, [])) == sorted(r["input"] for r in one)  # complete ...
    assert len(set(sum(names, []))) == len(one)  # ... and disjoint
    assert len(_cache_files(tmp_path / "one")) >= 3  # features and tokens of the good clips
    assert _cache_files(tmp_path / "shared") == _cache_files(tmp_path / "one")
    bad = run_vab("tokenize", str(clip_folder), "--shard", "0/3", *DEBUG)
    assert bad.returncode == 2 and "--shard" in bad.stderr


def test_torchrun_ranks_of_vab_tokenize_split_the_clips(clip_folder, tmp_path):  # noqa: F811
    one = _tokenize(clip_folder, tmp_path / "one")
    args = ["--cache", str(tmp_path / "ranks"), "--fps", str(FPS), *DEBUG, "--json"]
    done = torchrun("-m", "vabcli", "tokenize", str(clip_folder), *args, env=torchrun_env(tmp_path))
    assert done.returncode == 1, done.stderr[-3000:]  # the corrupt clip, in one rank's share
    names = [json.loads(line)["input"] for line in done.stdout.splitlines()]
    assert sorted(names) == sorted(r["input"] for r in one)  # each clip once, by one rank
    assert _cache_files(tmp_path / "ranks") == _cache_files(tmp_path / "one")


PROBE_SCRIPT = """
import sys
from pathlib import Path
from vabcli.training.distributed import exit_process, join_process_group, tokenizing_shard
run = join_process_group("cpu")
shard = tokenizing_shard(Path(sys.argv[1]))
Path(sys.argv[2], f"rank{run.rank}.txt").write_text(f"{shard.number}/{shard.count}")
exit_process(0)
"""


def _two_machines(tmp_path: Path, caches: tuple[Path, Path]) -> list[str]:
    """Two one-process 'machines' on this host (two torchrun launchers, nnodes 2), each told
    its own cache folder; what tokenizing share each rank takes."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE_SCRIPT)
    port = str(29500 + (hash(str(tmp_path)) % 2000))
    env = {**torchrun_env(tmp_path), "PYTHONPATH": str(ROOT)}
    launchers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"),
                *("--nproc_per_node", "1", "--node_rank", str(node)),
                *("--master_addr", "127.0.0.1", "--master_port", port),
                *(str(script), str(caches[node]), str(tmp_path)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    for launcher in launchers:
        _, err = launcher.communicate(timeout=120)
        assert launcher.returncode == 0, err[-3000:]
    return [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]


def test_machines_sharing_a_cache_split_all_clips_and_others_their_own(tmp_path):
    shared = tmp_path / "cache"
    assert _two_machines(tmp_path, (shared, shared)) == ["1/2", "2/2"]
    assert not list(shared.iterdir())  # the probe is gone
    own = (tmp_path / "cache-a", tmp_path / "cache-b")
    assert _two_machines(tmp_path, own) == ["1/1", "1/1"]  # each machine tokenizes them all


def test_a_manifest_clips_share_follows_its_line_not_where_the_files_are(tmp_path):
    from vabcli.data.clips import ClipItem, clip_items

    lines = "".join(f'{{"video": "clips/c{i}.mp4"}}\n' for i in range(40))
    shares = []
    for mount in ("machine-a/data", "machine-b/elsewhere/data"):
        manifest = tmp_path / mount / "m.jsonl"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(lines)
        items = clip_items(None, manifest)
        shares.append([item.line for item in Shard(2, 3).of(items, ClipItem.share_key)])
    assert shares[0] == shares[1] and 0 < len(shares[0]) < 40


def test_a_torchrun_environment_without_its_rendezvous_is_one_line(clip_folder, tmp_path):  # noqa: F811
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": ""}
    done = run_vab("tokenize", str(clip_folder), "--cache", str(tmp_path / "c"), *DEBUG, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot join the torchrun processes")
