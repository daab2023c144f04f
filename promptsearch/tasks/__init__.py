from promptsearch.tasks.base import Example, Task
from promptsearch.tasks.loaders import load_task

__all__ = ["Example", "Task", "load_task"]
