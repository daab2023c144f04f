from promptsearch.cost import Usage
from promptsearch.store.cache import CachedBackend
from promptsearch.store.db import Store

__all__ = ["CachedBackend", "Store", "Usage"]
