from promptsearch.searchers.base import SearchResult, Searcher, build_config

__all__ = ["SearchResult", "Searcher", "build_config"]
