"""The dashboard's caches stay within their byte bounds, share one computation per key between sessions, and a
view's size is what its arrays hold; Streamlit's reruns do not start a thread beside a busy one."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from d2debug.memory import deep_nbytes
from d2debug.ui import loaders

from helpers import streamlit_config


@dataclass
class _View:
    image: np.ndarray
    tensor: torch.Tensor
    crop: torch.Tensor
    jpeg: bytes
    parts: dict


def test_deep_nbytes_counts_each_array_and_storage_once():
    image = np.zeros((100, 200, 3), np.uint8)  # 60,000 bytes
    tensor = torch.zeros(3, 100, 200)  # 240,000 bytes
    view = _View(image, tensor, tensor[:, :50, :50], b"x" * 1000,
                 {"same image": image, "a slice of it": image[10:20], "list": [np.ones(250, np.float32)]})
    assert deep_nbytes(view) == 60_000 + 240_000 + 1000 + 1000
    assert deep_nbytes([view, view]) == deep_nbytes(view)
    assert deep_nbytes(None) == 0


def test_a_sized_cache_keeps_its_byte_bound_and_drops_the_least_recently_used(monkeypatch):
    monkeypatch.setitem(loaders.CACHE_MB, "test_bound", 1)
    calls = []

    @loaders._sized("test_bound", 1)
    def make(key: str, _n: int) -> np.ndarray:
        calls.append(key)
        return np.zeros(_n, np.uint8)

    try:
        for key in "abc":
            make(key, 400_000)
        entries, held = loaders.cache_bytes()["test_bound"]
        assert held <= 2**20 and entries == 2  # a: evicted to make room for c
        make("c", 400_000)
        make("a", 400_000)
        assert calls == ["a", "b", "c", "a"]
        make("big", 2 * 2**20)  # larger than the whole cache: returned, not kept
        assert loaders.cache_bytes()["test_bound"][1] <= 2**20
    finally:
        loaders._SIZED.pop("test_bound", None)


def test_two_sessions_asking_for_the_same_entry_compute_it_once(monkeypatch):
    monkeypatch.setitem(loaders.CACHE_MB, "test_once", 1)
    started, release = threading.Event(), threading.Event()
    calls = []

    @loaders._sized("test_once", 1)
    def slow(key: str) -> bytes:
        calls.append(key)
        started.set()
        release.wait(10)
        return b"done"

    try:
        got = []
        first = threading.Thread(target=lambda: got.append(slow("k")))
        first.start()
        assert started.wait(10)
        second = threading.Thread(target=lambda: got.append(slow("k")))
        second.start()
        time.sleep(0.2)  # the second is waiting for the first, not computing
        assert calls == ["k"]
        release.set()
        first.join(10)
        second.join(10)
        assert got == [b"done", b"done"] and calls == ["k"]
    finally:
        loaders._SIZED.pop("test_once", None)


@pytest.mark.parametrize("name", ["reference", "comparison", "runs", "deployed_comparison"])
def test_every_view_cache_is_bounded_by_bytes(name):
    cache = loaders._SIZED[name]
    assert cache.maxsize == loaders.CACHE_MB[name] * 2**20 and cache.getsizeof is deep_nbytes


def test_reruns_wait_for_the_busy_run_instead_of_starting_a_thread_beside_it():
    assert streamlit_config()["runner"]["fastReruns"] is False
