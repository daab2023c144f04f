from promptsearch.searchers.base import Searcher, SearchResult, build_config

__all__ = ["SearchResult", "Searcher", "build_config"]
