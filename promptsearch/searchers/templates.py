"""Meta-prompts: named, versioned values. Their hashes go into run records, so a result
can always be traced to the exact text that produced its candidates."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MetaPrompt:
    name: str
    version: int
    text: str  # plain-completion form, with {slots}
    chat: str  # the user turn for chat models, with the same slots

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.name}/{self.version}\n{self.text}\n{self.chat}".encode()).hexdigest()[:12]

    def record(self) -> dict:
        return {"name": self.name, "version": self.version, "hash": self.hash}


# Forward induction: demos first, then the model completes the instruction.
INDUCE = MetaPrompt(
    name="ape.induce",
    version=1,
    text=(
        "Someone was given one instruction and then wrote an output for each of these inputs, "
        "following that instruction every time.\n\n{demos}\n\n"
        "In one sentence, the instruction they had been given was to"
    ),
    chat=(
        "Each output below was written by following the same single instruction.\n\n{demos}\n\n"
        "What was the instruction? Answer with the instruction only, in one sentence."
    ),
)

# Monte Carlo resampling: a paraphrase of a good instruction that keeps its meaning.
RESAMPLE = MetaPrompt(
    name="ape.resample",
    version=1,
    text="Instruction: {instruction}\nThe same instruction, reworded but with exactly the same meaning:",
    chat=(
        "Reword this instruction so that it means exactly the same thing. "
        "Answer with the new instruction only.\n\n{instruction}"
    ),
)

DEMO = "Input: {input}\nOutput: {output}"

# OPRO (Yang et al. 2023): the trajectory of instructions with their scores, lowest first,
# then a few solved exemplars, then a request for a better one. The plain form ends inside
# the tag, so a completion model writes the instruction and stops at the closing tag.
OPRO_META = MetaPrompt(
    name="opro.meta",
    version=1,
    text=(
        "Below are instructions for a task, each with its accuracy (0-100); higher is better, and "
        "they are listed from worst to best.\n\n{trajectory}\n\n"
        "Here is how the task looks; <INS> marks where the instruction goes.\n\n{exemplars}\n\n"
        "A new instruction, different from every one above and more accurate than all of them, "
        "short and general enough for every input:\n<INS>"
    ),
    chat=(
        "Below are instructions for a task, each with its accuracy (0-100); higher is better, and "
        "they are listed from worst to best.\n\n{trajectory}\n\n"
        "Here is how the task looks; <INS> marks where the instruction goes.\n\n{exemplars}\n\n"
        "Write a new instruction that is different from every one above and more accurate than all of "
        "them, short and general enough for every input. Put it between <INS> and </INS>."
    ),
)
OPRO_ENTRY = "text:\n{instruction}\nscore:\n{score}"
OPRO_EXEMPLAR = "<INS>\nInput: {input}\nOutput: {output}"

# GrIPS's paraphrase edit (Prasad et al. 2023), for a proposer model in place of PEGASUS.
PARAPHRASE = MetaPrompt(
    name="grips.paraphrase",
    version=1,
    text="Phrase: {phrase}\nThe same phrase in other words:",
    chat="Say this phrase in other words, keeping its meaning. Answer with the new phrase only.\n\n{phrase}",
)
