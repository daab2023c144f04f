"""Sweeps: a grid spec -> trials (each an ordinary run through the runner) -> executors (local
processes, Ray) -> the sweep's table. Beside the runner, never inside it."""
