from collections.abc import Iterator

import pytest

from .node_engine import NodeEngine, build_engine


@pytest.fixture(scope="session")
def engine_builds() -> dict:
    """Both WebAssembly modules, built from web/engine/ by its build script."""
    return build_engine()


@pytest.fixture(scope="module")
def node(engine_builds: dict) -> Iterator[NodeEngine]:
    engine = NodeEngine()
    yield engine
    engine.close()
