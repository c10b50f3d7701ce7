"""The demo model: its episode generator, its checkpoint through load_engine, its success rate."""

from __future__ import annotations

import random
from datetime import date

import pytest

from llm.demo.data import (
    KINDS,
    TRAIN_SEED,
    generate_episodes,
    heldout_episodes,
    make_episode,
    run_code,
)


def test_same_seed_same_episodes():
    assert generate_episodes(30, seed=5) == generate_episodes(30, seed=5)
    assert generate_episodes(30, seed=5) != generate_episodes(30, seed=6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_answers_with_the_printed_value(kind):
    episode = make_episode(random.Random(kind), kind)
    assert episode.kind == kind
    assert episode.answer == run_code(episode.code) != ""
    assert episode.action_text().startswith("Thought: ")
    assert "\nAction: code_interpreter\nAction Input:\n```py\n" in episode.action_text()
    assert episode.action_text().endswith("\n```\n")
    assert episode.final_text() == f" I now know the final answer.\nFinal Answer: {episode.answer}"


def _listed(code: str) -> list[int]:
    return [int(x) for x in code.split("[", 1)[1].split("]", 1)[0].split(", ")]


def test_known_answers():
    """Spot checks against values computed independently of the generator's code."""
    rng = random.Random(0)
    for _ in range(200):
        e = make_episode(rng)
        if e.kind == "sum":
            assert int(e.answer) == sum(_listed(e.code))
        elif e.kind == "max":
            assert int(e.answer) == max(_listed(e.code))
        elif e.kind == "day_difference":
            first, second = (date.fromisoformat(s) for s in e.code.split('"')[1::2])
            assert int(e.answer) == (second - first).days >= 0


def test_heldout_questions_are_distinct_and_unseen_in_training():
    heldout = heldout_episodes(50)
    assert len({e.question for e in heldout}) == 50
    exclude = {e.question for e in heldout}
    training = generate_episodes(3000, TRAIN_SEED, exclude=exclude)
    assert not exclude & {e.question for e in training}


def test_run_code_reports_what_was_printed():
    assert run_code("print(6 * 7)\n") == "42"
    with pytest.raises(ZeroDivisionError):
        run_code("print(1 / 0)")


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="cube_root"):
        make_episode(random.Random(0), "cube_root")


# --- the Int4 rounding used in training is the packer's ---------------------------------------


def test_training_rounding_is_the_packers():
    torch = pytest.importorskip("torch")
    from llm.demo.model_setup import GROUP_SIZE, int4_dequantize, int4_quantize
    from llm.gptq_pack import quantize_weight
    from llm.quant import dequantize

    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 0.05
    packed = quantize_weight(w, GROUP_SIZE)
    stored = dequantize(packed.qweight, packed.qzeros, packed.scales, packed.g_idx).t()
    assert torch.equal(int4_dequantize(*int4_quantize(w, GROUP_SIZE)), stored)


# --- training sequences are what the agent sends ----------------------------------------------


def test_training_sequence_is_the_agents_prompt_plus_model_text():
    from llm.demo.recording import observation_text
    from llm.demo.train import render_episode
    from llm.tokenizer import QwenTokenizer

    tok = QwenTokenizer.default()
    episode = heldout_episodes(1)[0]
    rendered = render_episode(episode, tok)
    (a, b), (c, d) = rendered.spans
    assert tok.decode(rendered.ids[a:b]) == episode.action_text() + "Observation:"
    assert tok.decode(rendered.ids[c:d]) == episode.final_text() + "<|im_end|>"
    text = tok.decode(rendered.ids[:c])
    assert text.endswith(f"\nObservation: {observation_text(episode)}\nThought:")
    assert f"\n```\n{episode.answer}\n```" in observation_text(episode)
    assert f"Question: {episode.question}<|im_end|>\n<|im_start|>assistant\n" in text


def test_training_observation_is_what_the_real_interpreter_shows():
    from llm.demo.recording import observation_text
    from tools import CodeInterpreter

    episodes = [make_episode(random.Random(k), k) for k in ("mean", "weekday", "sort")]
    with CodeInterpreter() as interpreter:
        for episode in episodes:
            output = interpreter.invoke(episode.action_input)
            assert not output.is_error, output.text
            assert output.text == observation_text(episode)


# --- the committed checkpoint ----------------------------------------------------------------

CHECKPOINT_LIMIT = 40 * 1024 * 1024


def test_checkpoint_has_the_int4_layout_and_fits_the_budget():
    from llm.config import load_checkpoint_config
    from llm.demo import demo_model_dir

    directory = demo_model_dir()
    names = {p.name for p in directory.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "quantize_config.json",
        "tokenizer_config.json",
        "qwen.tiktoken",
        "model.safetensors.index.json",
    } <= names
    assert any(n.startswith("model-00001-of-") and n.endswith(".safetensors") for n in names)
    assert sum(p.stat().st_size for p in directory.iterdir()) <= CHECKPOINT_LIMIT
    ckpt = load_checkpoint_config(directory)
    assert ckpt.quantize is not None and ckpt.quantize.bits == 4
    assert ckpt.model.tie_word_embeddings


@pytest.fixture(scope="module")
def demo_engine():
    from llm.demo import demo_model_dir
    from llm.engine import load_engine

    return load_engine(demo_model_dir(), device="cpu", progress=False)


@pytest.fixture(scope="module")
def interpreter():
    from tools import CodeInterpreter

    with CodeInterpreter() as tool:
        yield tool


def test_demo_checkpoint_loads_with_int4_layers(demo_engine):
    from llm.quant import GPTQLinear

    layers = [m for m in demo_engine.model.modules() if isinstance(m, GPTQLinear)]
    assert len(layers) == 5 * demo_engine.config.num_hidden_layers


def test_demo_model_answers_a_heldout_question(demo_engine, interpreter):
    from agent import Agent
    from llm.demo.evaluate import run_episode

    agent = Agent(llm=demo_engine, tools=[interpreter], max_steps=4)
    outcomes = [run_episode(agent, e) for e in heldout_episodes(3)]
    assert all(o.tool_calls >= 1 for o in outcomes), outcomes
    assert sum(o.success for o in outcomes) >= 2, outcomes


@pytest.mark.slow
def test_demo_model_success_rate_on_50_heldout_questions(demo_engine):
    from llm.demo.evaluate import evaluate

    report = evaluate(n=50, engine=demo_engine)
    summary = report.summary()
    assert summary["questions"] == 50
    assert report.rate >= 0.9, summary
