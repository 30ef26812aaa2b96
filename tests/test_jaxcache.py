"""Compiled-code housekeeping: a process that compiles again and again must not reach the kernel's
memory-mapping limit (where XLA's next compilation segfaults)."""

import jax
import jax.numpy as jnp
import pytest

from diffcalo.jaxcache import max_memory_mappings, memory_mappings, trim_compiled_code

pytestmark = pytest.mark.skipif(memory_mappings() is None, reason="needs /proc/self/maps (Linux)")


def test_trimming_releases_the_mappings_of_compiled_code():
    trim_compiled_code(0.0)
    before = memory_mappings()
    for i in range(60):
        jax.jit(lambda x, i=i: jnp.sin(x) * i)(jnp.ones(7 + i)).block_until_ready()
    grown = memory_mappings()
    assert grown - before > 60                                  # measured ~3 mappings per executable
    assert not trim_compiled_code(1.0)                          # far below the limit: nothing to do
    assert trim_compiled_code(0.0)
    assert memory_mappings() < before + 0.5 * (grown - before)       # most go (measured: 73 %)
    assert 1000 < max_memory_mappings()
