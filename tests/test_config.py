"""tarlib.config: the fast-mode switch, seeding and device choice."""

import random

import numpy as np
import pytest
import torch

import tarlib


def test_fast_mode_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARLIB_FAST", "1")
    assert tarlib.fast_mode() and tarlib.pick(full=100, fast=3) == 3
    monkeypatch.setenv("TARLIB_FAST", "0")
    assert not tarlib.fast_mode() and tarlib.pick(full=100, fast=3) == 100
    monkeypatch.delenv("TARLIB_FAST")
    assert not tarlib.fast_mode()


def test_fast_mode_rejects_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARLIB_FAST", "fats")
    with pytest.raises(ValueError, match="TARLIB_FAST"):
        tarlib.fast_mode()


def test_setup_makes_all_generators_repeatable() -> None:
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    tarlib.setup(seed=7)
    first = draw()
    tarlib.setup(seed=7)
    assert draw() == first
    tarlib.setup(seed=8)
    assert draw() != first


def test_setup_device_and_errors() -> None:
    assert tarlib.setup(0, device="cpu") == torch.device("cpu")
    assert tarlib.setup(0).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="seed"):
        tarlib.setup(seed=-1)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            tarlib.setup(0, device="cuda")


def test_atomic_write_is_all_or_nothing(tmp_path) -> None:
    from tarlib.config import atomic_write

    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, [b"ab", b"cd"])
    assert target.read_bytes() == b"abcd"

    def failing():
        yield b"new content"
        raise KeyboardInterrupt  # an interruption half-way through

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, failing())
    with pytest.raises(ValueError, match="sha256"):
        atomic_write(target, b"other", sha256="0" * 64)
    assert target.read_bytes() == b"abcd", "a failed write must leave the old file untouched"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"], "no temporary file may be left"
