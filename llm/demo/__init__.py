"""The embedded demo model: a small Qwen-architecture Int4 checkpoint trained on synthetic
ReAct episodes (arithmetic, number lists, calendar dates answered with the code interpreter).

It is not Qwen-14B: it only knows its narrow domain. It exists so that the whole stack (real
tokenizer, ChatML, GPTQ Int4 checkpoint, model-generated ReAct text, real code interpreter)
runs offline on a CPU in seconds. ``llm/demo/data.py``, ``train.py`` and ``quantize.py``
reproduce the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent import AgentResult

DEFAULT_QUERY = "What is 3817 * 292?"
BANNER = (
    "This is the qwen-react demo model (a tiny Int4 model trained on arithmetic, number-list "
    "and date questions), not Qwen-14B-Chat. Configure a real model for general questions."
)


def demo_model_dir() -> Path:
    """The directory of the committed demo checkpoint (Qwen-14B-Chat-Int4 file layout)."""
    return Path(__file__).resolve().parent / "checkpoint"


def run_demo(
    query: str | None = None,
    *,
    device: str | None = "cpu",
    max_steps: int = 4,
    **agent_options: Any,
) -> AgentResult:
    """Answer ``query`` (default: a multiplication) with the demo model and the code interpreter.

    The model is loaded through ``load_engine`` like any checkpoint; ``agent_options`` go to
    ``Agent``. Returns the agent's result; consume ``Agent.stream`` for step-by-step output.
    """
    from agent import Agent
    from llm.engine import load_engine
    from tools import CodeInterpreter

    engine = load_engine(demo_model_dir(), device=device, progress=False)
    with CodeInterpreter() as interpreter:
        agent = Agent(llm=engine, tools=[interpreter], max_steps=max_steps, **agent_options)
        return agent.run(query or DEFAULT_QUERY)
